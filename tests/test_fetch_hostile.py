"""Hostile mirrors, broken cache entries and killed downloads, against the real thing:
a loopback HTTP server, real files, FIFOs, device links, and a fetching subprocess
killed with SIGKILL.  Mirrors are chosen the way a user does, with
``$DIGITLAB_MIRRORS``."""

import dataclasses
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import filelock
import pytest

import digitlab.data.fetch
from digitlab.data.fetch import fetch_dataset, fetch_mnist, mirrors_for
from digitlab.data.registry import FASHION_MNIST, MNIST
from digitlab.errors import ConfigError, DataError, FetchError
from fetch_server import NAMES, MirrorServer, SyntheticMnist

KEYS = ("train_images", "train_labels", "test_images", "test_labels")
GZ_NAMES = sorted(NAMES[key] + ".gz" for key in KEYS)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in (
        "DIGITLAB_DATA_DIR",
        "DIGITLAB_MIRRORS",
        "DIGITLAB_MIRRORS_MNIST",
        "DIGITLAB_MIRRORS_FASHION_MNIST",
        "DIGITLAB_FETCH_DEADLINE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def synthetic():
    # Large enough (about 1 MB of .gz) that a download takes several reads.
    return SyntheticMnist(seed=1, train=1200, test=100)


@pytest.fixture
def server(synthetic):
    served = {NAMES[key] + ".gz": synthetic.gz[key] for key in KEYS}
    with MirrorServer(served, slow_seconds=10.0, trickle_seconds=0.2, stall_seconds=60) as mirror:
        yield mirror


def within(seconds, function, *args, **kwargs):
    """Run ``function`` in a thread; fail the test (instead of hanging) past ``seconds``.
    Returns its result or raises its exception."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as error:  # handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{function.__name__} still running after {seconds} s")
    outcome["elapsed"] = time.monotonic() - started
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def fetch(synthetic, cache, **options):
    options = {"progress": False, "files": synthetic.files, "wheel": None, **options}
    return fetch_mnist(cache_dir=cache, **options)


def cache_names(cache: Path) -> list[str]:
    return sorted(path.name for path in cache.iterdir() if path.name != ".lock")


def temporaries(cache: Path) -> list[Path]:
    if not cache.is_dir():
        return []
    return [path for path in cache.iterdir() if ".tmp" in path.name or path.name.startswith("tmp")]


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed or removed meanwhile
        return -1


# ------------------------------------------------------------- size caps (item 1)


def test_endless_and_huge_mirrors_are_cut_at_the_pinned_size_and_fall_through(
    synthetic, server, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    urls = [server.url(kind) for kind in ("endless", "huge", "good")]
    monkeypatch.setenv("DIGITLAB_MIRRORS", " ".join(urls))
    started = time.monotonic()
    got = within(30, fetch, synthetic, cache)
    assert time.monotonic() - started < 15
    assert got.buffers == synthetic.raw
    assert got.source == f"mirror {urls[2]}"
    assert cache_names(cache) == GZ_NAMES  # nothing partial, nothing oversized
    for key in KEYS:
        assert (cache / (NAMES[key] + ".gz")).read_bytes() == synthetic.gz[key]
    # Each hostile mirror was asked once, and what it pushed was bounded by socket buffers.
    for kind in ("endless", "huge"):
        assert sum(request.startswith(f"/{kind}/") for request in server.requests) == 1
    assert server.sent.get("huge", 0) < 64 * 2**20
    assert server.sent["endless"] < 64 * 2**20


def test_only_hostile_mirrors_fail_in_one_line_naming_each(
    synthetic, server, tmp_path, monkeypatch
):
    urls = [server.url(kind) for kind in ("endless", "huge", "redirect")]
    monkeypatch.setenv("DIGITLAB_MIRRORS", ",".join(urls))
    gz = synthetic.files["train_images"].gz_size
    with pytest.raises(FetchError) as caught:
        within(30, fetch, synthetic, tmp_path / "cache")
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert f"mirror {urls[0]} (sent more than the {gz} bytes of train-images-idx3-ubyte.gz)" in (
        message
    )
    assert (
        f"mirror {urls[1]} (Content-Length 10000000000 for train-images-idx3-ubyte.gz, "
        f"expected {gz} bytes)" in message
    )
    assert f"mirror {urls[2]} (more than 5 redirects)" in message
    assert cache_names(tmp_path / "cache") == []


# ------------------------------------------------------------- deadlines (item 2)


def test_trickling_mirror_hits_the_deadline_and_falls_through(
    synthetic, server, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    urls = [server.url("trickle"), server.url("good")]
    monkeypatch.setenv("DIGITLAB_MIRRORS", f"{urls[0]}, {urls[1]}")
    started = time.monotonic()
    got = within(30, fetch, synthetic, cache, deadline=1.0, timeout=5)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 6, elapsed  # one deadline, then the good mirror
    assert got.source == f"mirror {urls[1]}" and got.buffers == synthetic.raw
    assert cache_names(cache) == GZ_NAMES
    assert 2 <= server.sent["trickle"] <= 10  # one byte every 0.2 s for about 1 s


def test_stalled_body_and_silent_mirror_end_at_the_deadline_not_the_read_timeout(
    synthetic, server, tmp_path
):
    urls = (server.url("stall"), server.url("slow"))
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        within(30, fetch, synthetic, tmp_path / "cache", mirrors=urls, deadline=1.0, timeout=20)
    assert time.monotonic() - started < 5  # two deadlines of 1 s, not two waits of 20 s
    message = str(caught.value)
    assert f"mirror {urls[0]} (train-images-idx3-ubyte.gz not complete within its 1 s" in message
    assert f"mirror {urls[1]} (train-images-idx3-ubyte.gz not complete within its 1 s" in message
    assert cache_names(tmp_path / "cache") == []


def test_deadline_from_the_environment_names_itself_in_the_failure(
    synthetic, server, tmp_path, monkeypatch
):
    url = server.url("trickle")
    monkeypatch.setenv("DIGITLAB_MIRRORS", url)
    monkeypatch.setenv("DIGITLAB_FETCH_DEADLINE", "0.5")
    gz = synthetic.files["train_images"].gz_size
    with pytest.raises(FetchError) as caught:
        within(30, fetch, synthetic, tmp_path / "cache", timeout=5)
    found = str(caught.value)
    assert f"mirror {url} (train-images-idx3-ubyte.gz not complete within its 0.5 s deadline (" in (
        found
    )
    assert f" of {gz} bytes)" in found
    monkeypatch.setenv("DIGITLAB_FETCH_DEADLINE", "soon")
    with pytest.raises(ConfigError, match=r"\$DIGITLAB_FETCH_DEADLINE: expected a positive"):
        fetch(synthetic, tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"deadline: expected a positive .*Received: inf"):
        fetch(synthetic, tmp_path / "cache", deadline=float("inf"))


def test_default_deadline_grows_with_the_file():
    from digitlab.data.mirrors import DEFAULT_DEADLINE, MIN_RATE, deadline_for

    small, large = MNIST.files["test_labels"], FASHION_MNIST.files["train_images"]
    assert deadline_for(small, None) == DEFAULT_DEADLINE
    assert deadline_for(large, None) == pytest.approx(large.gz_size / MIN_RATE)
    assert deadline_for(large, 3) == 3.0


# --------------------------------------------------- entries that are not files (item 3)


def test_cache_entries_that_are_not_regular_files_are_replaced(synthetic, server, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "train-images-idx3-ubyte.gz").symlink_to("/dev/zero")
    os.mkfifo(cache / "train-labels-idx1-ubyte.gz")
    (cache / "t10k-images-idx3-ubyte.gz").symlink_to(tmp_path / "nowhere")
    (cache / "t10k-labels-idx1-ubyte").mkdir()  # an empty folder where a file belongs
    with pytest.raises(FetchError, match=r"lacks good copies .*download is off"):
        within(20, fetch, synthetic, cache, download=False)
    got = within(30, fetch, synthetic, cache, mirrors=(server.url("good"),))
    assert got.buffers == synthetic.raw
    assert cache_names(cache) == GZ_NAMES
    for name in GZ_NAMES:
        assert (cache / name).is_file() and not (cache / name).is_symlink()
    assert Path("/dev/zero").exists()  # the link was removed, not its target


def test_cache_folder_with_files_in_it_is_refused_not_deleted(synthetic, server, tmp_path):
    cache = tmp_path / "cache"
    (cache / "train-images-idx3-ubyte").mkdir(parents=True)
    (cache / "train-images-idx3-ubyte" / "mine.txt").write_text("keep me")
    with pytest.raises(FetchError, match=r"cache entry .*train-images-idx3-ubyte is a directory "):
        within(20, fetch, synthetic, cache, mirrors=(server.url("good"),))
    assert (cache / "train-images-idx3-ubyte" / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda path: path.symlink_to("/dev/zero"), "a character device"),
        (lambda path: os.mkfifo(path), "a FIFO"),
        (lambda path: path.symlink_to(path.parent / "gone"), "a broken symbolic link"),
        (lambda path: path.mkdir(), "a directory"),
    ],
)
def test_named_folder_entry_that_is_not_a_file_is_an_error_naming_it(
    synthetic, tmp_path, make, kind
):
    for key in KEYS:
        (tmp_path / (NAMES[key] + ".gz")).write_bytes(synthetic.gz[key])
    bad = tmp_path / "t10k-images-idx3-ubyte"  # found before the good .gz
    make(bad)
    with pytest.raises(DataError) as caught:
        within(20, fetch, synthetic, None, data_dir=tmp_path)
    assert str(caught.value) == (
        f"{bad} is {kind}: expected the regular file t10k-images-idx3-ubyte"
    )


def test_named_folder_file_far_larger_than_its_pin_is_refused_unread(synthetic, tmp_path):
    for key in KEYS:
        (tmp_path / NAMES[key]).write_bytes(synthetic.raw[key])
    sparse = tmp_path / "train-images-idx3-ubyte"
    with open(sparse, "r+b") as handle:  # 10 GB, sparse: reading it would take minutes
        handle.truncate(10 * 10**9)
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte holds 10000000000 bytes: expected"
    ):
        within(10, fetch, synthetic, None, data_dir=tmp_path)


def test_load_dataset_refuses_a_fifo_in_any_folder_without_waiting(synthetic, tmp_path):
    from digitlab.data import load_dataset

    for key in KEYS:
        (tmp_path / NAMES[key]).write_bytes(synthetic.raw[key])
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    os.mkfifo(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataError) as caught:
        within(20, load_dataset, tmp_path, progress=False)
    assert str(caught.value) == (
        f"{tmp_path / 't10k-labels-idx1-ubyte'} is a FIFO: expected a regular IDX file"
    )


# --------------------------------------------------------- killed downloads (item 4)

KILLED_WORKER = """
import json, sys
from digitlab.data.fetch import MnistFile, fetch_mnist
files = {key: MnistFile(**pin) for key, pin in json.loads(sys.argv[1]).items()}
fetch_mnist(cache_dir=sys.argv[2], files=files, wheel=None, progress=False)
"""


def subprocess_env(**extra):
    source_root = str(Path(digitlab.data.fetch.__file__).parents[2])
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([source_root, os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def test_kill_9_mid_download_leaves_a_temporary_the_next_fetch_removes(synthetic, server, tmp_path):
    cache = tmp_path / "cache"
    pins = json.dumps({key: vars(file) for key, file in synthetic.files.items()})
    worker = subprocess.Popen(
        [sys.executable, "-c", KILLED_WORKER, pins, str(cache)],
        env=subprocess_env(DIGITLAB_MIRRORS=server.url("stall")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # The stalling mirror sends half of train-images, then waits: wait for that half.
        half = synthetic.files["train_images"].gz_size // 2
        give_up = time.monotonic() + 60
        partial = []
        while time.monotonic() < give_up and worker.poll() is None:
            partial = [path for path in temporaries(cache) if size(path) >= half]
            if partial:
                break
            time.sleep(0.05)
        assert partial, worker.stderr.read() if worker.poll() is not None else "no partial file"
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(timeout=30) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.stderr.close()
    (name,) = [path.name for path in partial]
    assert name.startswith(".train-images-idx3-ubyte.gz.") and ".tmp" in name  # recognisable
    assert cache_names(cache) == [name]  # the partial, never under a final name
    (cache / "tmpab12cd_9").write_bytes(b"x" * 100)  # what pooch left in earlier versions
    got = within(30, fetch, synthetic, cache, mirrors=(server.url("good"),))
    assert got.buffers == synthetic.raw
    assert cache_names(cache) == GZ_NAMES
    assert temporaries(cache) == []


LOCK_HOLDER = """
import sys, time, filelock
lock = filelock.FileLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_full_cache_cleans_leftovers_unless_another_process_holds_the_lock(
    synthetic, server, tmp_path
):
    cache = tmp_path / "cache"
    within(30, fetch, synthetic, cache, mirrors=(server.url("good"),))
    leftover = cache / ".t10k-images-idx3-ubyte.gz.0123456789ab.tmp.gz"
    leftover.write_bytes(b"partial")
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(cache / ".lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        got = within(20, fetch, synthetic, cache, download=False)
        assert got.source == f"cache {cache}"
        assert leftover.exists()  # a live fetch may own it
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    within(20, fetch, synthetic, cache, download=False)
    assert not leftover.exists()
    assert cache_names(cache) == GZ_NAMES
    with filelock.FileLock(cache / ".lock").acquire(timeout=1):
        pass  # the lock was given back


# ----------------------------------------------------------- DIGITLAB_MIRRORS (item 5)


def test_mirror_variables_parse_order_and_placeholder(monkeypatch):
    assert mirrors_for(MNIST) == MNIST.mirrors
    monkeypatch.setenv("DIGITLAB_MIRRORS", " http://a.example/{dataset} ,https://b.example/x/ ")
    assert mirrors_for(MNIST) == ("http://a.example/mnist/", "https://b.example/x/")
    assert mirrors_for(FASHION_MNIST)[0] == "http://a.example/fashion-mnist/"
    monkeypatch.setenv("DIGITLAB_MIRRORS_FASHION_MNIST", "http://c.example/f")
    assert mirrors_for(FASHION_MNIST) == ("http://c.example/f/",)
    assert mirrors_for(MNIST)[0] == "http://a.example/mnist/"
    monkeypatch.setenv("DIGITLAB_MIRRORS", "ftp://old.example/mnist/")
    with pytest.raises(ConfigError) as caught:
        mirrors_for(MNIST)
    assert str(caught.value) == (
        "$DIGITLAB_MIRRORS: expected base URLs (http:// or https://) separated by spaces or "
        "commas. Received: 'ftp://old.example/mnist/'"
    )
    monkeypatch.setenv("DIGITLAB_MIRRORS", "   ")
    assert mirrors_for(MNIST) == MNIST.mirrors  # blank is unset


def test_fashion_mirrors_from_the_per_dataset_variable(synthetic, server, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_MIRRORS", server.url("missing"))
    monkeypatch.setenv(
        "DIGITLAB_MIRRORS_FASHION_MNIST", f"{server.url('wrong')} {server.url('good')}"
    )
    spec = dataclasses.replace(FASHION_MNIST, files=synthetic.files, local_folders=())
    got = within(30, fetch_dataset, spec, cache_dir=tmp_path / "cache", progress=False)
    assert got.name == "fashion-mnist" and got.buffers == synthetic.raw
    assert got.source == f"mirror {server.url('good')}"
    assert not any(request.startswith("/missing/") for request in server.requests)
    # mirrors= given to the call wins over both variables.
    server.requests.clear()
    got = within(
        30,
        fetch_dataset,
        spec,
        cache_dir=tmp_path / "other",
        progress=False,
        mirrors=(server.url("good"),),
    )
    assert {request.split("/")[1] for request in server.requests} == {"good"}


@pytest.mark.parametrize("kind", ["chunked", "encoded"])
def test_honest_mirrors_with_other_transfer_forms_still_work(
    synthetic, server, tmp_path, monkeypatch, kind
):
    monkeypatch.setenv("DIGITLAB_MIRRORS", server.url(kind))
    got = within(30, fetch, synthetic, tmp_path / "cache", progress=True)  # with progress bars
    assert got.buffers == synthetic.raw and got.source == f"mirror {server.url(kind)}"
    assert cache_names(tmp_path / "cache") == GZ_NAMES


def test_damaged_gz_from_a_mirror_is_never_kept(synthetic, server, tmp_path, monkeypatch):
    # A .gz whose pinned hash matches is trusted; check that one that does not match
    # (same length) leaves nothing behind, and that a good copy then fills the cache.
    monkeypatch.setenv("DIGITLAB_MIRRORS", f"{server.url('wrong')} {server.url('good')}")
    cache = tmp_path / "cache"
    got = within(30, fetch, synthetic, cache)
    assert got.buffers == synthetic.raw
    for key in KEYS:
        assert gzip.decompress((cache / (NAMES[key] + ".gz")).read_bytes()) == synthetic.raw[key]
