"""What a confused user or an attacker can do to the command line, each case
reproduced against the real thing: real files, FIFOs, devices, symbolic
links, zip bombs, sparse files, and real signals sent to real ``digitlab``
processes.  Every bad input ends as one line on stderr and exit status 2 (or
130 / 143 for Ctrl-C / SIGTERM), never a traceback, a hang, a partial file or
a file of the user's replaced."""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_idx_dataset
from digitlab import _files
from digitlab.errors import RunError
from digitlab.runs import load_run

FIXTURES = Path(__file__).parent / "fixtures"


def digitlab(*args, timeout=120, cwd=None, umask=-1):
    return subprocess.run(
        [sys.executable, "-m", "digitlab", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        umask=umask,
    )


def one_line_error(result, *fragments, status=2):
    assert result.returncode == status, (result.returncode, result.stderr[-3000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A synthetic 8x8, 3-class dataset: an MLP trains on it in well under a second."""
    return write_idx_dataset(tmp_path_factory.mktemp("tiny") / "data", classes=3)


@pytest.fixture()
def mlp_run(tmp_path):
    target = tmp_path / "run"
    shutil.copytree(FIXTURES / "mlp-0.1.0", target)
    return target


@pytest.fixture()
def gnb_run(tmp_path):
    target = tmp_path / "gnb"
    shutil.copytree(FIXTURES / "gnb-0.1.0", target)
    return target


def photo(path: Path, mnist) -> Path:
    """A 300x400 "photo" of a real MNIST seven: dark ink on light paper."""
    digit = Image.fromarray(255 - mnist.x_test[0]).resize((240, 240))
    page = Image.new("L", (300, 400), 230)
    page.paste(digit, (30, 80))
    path.parent.mkdir(parents=True, exist_ok=True)
    page.convert("RGB").save(path)
    return path


# --------------------------------------------------------------------------- 1. user files


def test_preview_into_the_photos_folder_never_replaces_a_photo(mlp_run, mnist, tmp_path):
    seven = photo(tmp_path / "photos" / "seven.png", mnist)
    before = digest(seven)
    for expected in ("seven-2.png", "seven-3.png"):
        done = digitlab("predict", mlp_run, seven, "--preview", seven.parent, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)[0]["preview"] == [str(seven.parent / expected)]
        with Image.open(seven.parent / expected) as image:
            assert image.size == (28, 28)
    assert digest(seven) == before
    with Image.open(seven) as image:
        assert image.size == (300, 400)
    assert temporaries(seven.parent) == []


def test_preview_into_a_file_is_one_line(mlp_run, mnist, tmp_path):
    seven = photo(tmp_path / "seven.png", mnist)
    done = digitlab("predict", mlp_run, seven, "--preview", seven)
    one_line_error(done, "--preview: expected a folder")
    assert seven.stat().st_size > 1000


def test_sweep_refuses_a_folder_of_user_files(tiny_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("my,own\n1,2\n")
    (mine / "summary.csv").write_text("keep me\n")
    args = ("sweep", "--model", "gnb", "--set", "validation_size=20", "--data-dir", tiny_dir)
    done = digitlab(*args, "--out", mine)
    one_line_error(done, "--out: expected a new or empty folder, or a sweep folder")
    assert (mine / "results.csv").read_text() == "my,own\n1,2\n"
    assert sorted(p.name for p in mine.iterdir()) == ["results.csv", "summary.csv"]
    # A new folder, an empty one, and a sweep folder digitlab wrote (to resume) are fine.
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new", tmp_path / "empty", tmp_path / "new"):
        done = digitlab(*args, "--out", out, "--quiet")
        assert done.returncode == 0, done.stderr
        assert (out / "trials").is_dir() and (out / "results.csv").is_file()


# ---------------------------------------------------------------- 2. run folders, signals


@pytest.mark.parametrize("kind", ["dangling", "empty folder"])
def test_run_dir_that_is_a_symlink_is_refused_before_training(tiny_dir, tmp_path, kind):
    link = tmp_path / "link"
    if kind == "dangling":
        link.symlink_to(tmp_path / "nowhere")
    else:
        (tmp_path / "empty").mkdir()
        link.symlink_to(tmp_path / "empty")
    start = time.perf_counter()
    done = digitlab("train", "--data-dir", tiny_dir, "--validation-size", "20", "--run-dir", link)
    one_line_error(done, f"{link}: expected a new or empty folder", "symbolic link")
    assert done.stdout == ""  # nothing trained
    assert time.perf_counter() - start < 30
    assert link.is_symlink() and temporaries(tmp_path) == []


_SAVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from digitlab import _files, _interrupts
    _interrupts.install()
    with _files.atomic_folder(Path(sys.argv[1])) as tmp:
        (tmp / "model.keras").write_bytes(b"x" * 1000)
        print("saving", flush=True)
        time.sleep(60)
    """
)


def _saver(target: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", _SAVER, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "saving"
    return process


def test_sigterm_while_saving_leaves_no_temporary_folder(tmp_path):
    process = _saver(tmp_path / "run1")
    assert len(temporaries(tmp_path)) == 1
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) != 0
    assert list(tmp_path.iterdir()) == []


def test_sigkill_while_saving_is_cleaned_at_the_next_save(tmp_path):
    process = _saver(tmp_path / "run1")
    process.kill()
    process.wait(timeout=30)
    assert len(temporaries(tmp_path)) == 1  # SIGKILL runs no cleanup
    # Temporaries of other writers: a live one, an old one without an owner
    # (an earlier digitlab), and files that only look alike are left alone
    # unless they are stale.
    live = _saver(tmp_path / "run2")
    old = tmp_path / ".run3.0123456789ab.tmp"
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    fresh = tmp_path / ".run4.0123456789ab.tmp"
    fresh.mkdir()
    mine = tmp_path / ".notes.tmp"
    mine.write_text("the user's")
    try:
        with _files.atomic_folder(tmp_path / "run5") as tmp:
            (tmp / "a").write_text("a")
        left = temporaries(tmp_path)
        assert len([name for name in left if name.startswith(".run2.")]) == 1
        assert ".run4.0123456789ab.tmp" in left and ".notes.tmp" in left
        assert not any(name.startswith((".run1.", ".run3.")) for name in left)
        assert (tmp_path / "run5" / "a").read_text() == "a"
        assert not (tmp_path / "run5" / _files.OWNER_FILE).exists()
    finally:
        live.kill()
        live.wait(timeout=30)


def _sigint_after_save_script(run_dir: Path, data: Path) -> str:
    return textwrap.dedent(
        f"""
        import os, signal, sys
        from digitlab import runs, training
        save = runs.save_run
        def save_then_interrupt(*args, **kwargs):
            saved = save(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C just after the final rename
            return saved
        training.runs.save_run = save_then_interrupt
        from digitlab.cli import main
        sys.exit(main(["train", "--data-dir", {str(data)!r}, "--validation-size", "20",
                       "--epochs", "1", "--no-plots", "--quiet", "--run-dir", {str(run_dir)!r}]))
        """
    )


def test_sigint_just_after_the_run_is_saved_still_prints_its_path(tiny_dir, tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", _sigint_after_save_script(run_dir, tiny_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "digitlab: interrupted", done.stderr
    assert f"run folder: {run_dir}" in done.stdout
    assert load_run(run_dir).metrics.size == 20


def _train_and_signal(tmp_path: Path, sig: int, delay: float) -> subprocess.CompletedProcess:
    """Start the tutorial's training on the real MNIST, wait for its first
    epoch to begin, then ``delay`` seconds, and send ``sig``."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "digitlab", "train", "--epochs", "50", "--run-dir", run_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen = b""
    deadline = time.monotonic() + 120
    while b"Epoch 1/" not in seen:
        assert time.monotonic() < deadline and process.poll() is None, seen[-2000:]
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if ready:
            seen += os.read(process.stdout.fileno(), 65536)
    time.sleep(delay)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert not run_dir.exists() and temporaries(tmp_path) == []
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr.decode())


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0, 2.5])
def test_ctrl_c_during_training_always_stops_with_130(tmp_path, delay):
    done = _train_and_signal(tmp_path, signal.SIGINT, delay)
    assert done.returncode == 130, done.stderr[-3000:]
    assert done.stderr.strip() == "digitlab: interrupted", done.stderr[-3000:]


def test_sigterm_during_training_stops_with_143(tmp_path):
    done = _train_and_signal(tmp_path, signal.SIGTERM, 0.5)
    assert done.returncode == 143, done.stderr[-3000:]
    assert done.stderr.strip() == "digitlab: terminated", done.stderr[-3000:]


# --------------------------------------------------------------------------- 7. permissions


@pytest.mark.parametrize("umask, folder, file", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_run_folders_get_the_umask_modes(tiny_dir, tmp_path, umask, folder, file):
    run_dir = tmp_path / "run"
    done = digitlab(
        "train",
        "--data-dir",
        tiny_dir,
        "--validation-size",
        "20",
        "--epochs",
        "1",
        "--run-dir",
        run_dir,
        "--quiet",
        umask=umask,
    )
    assert done.returncode == 0, done.stderr
    assert run_dir.stat().st_mode & 0o777 == folder
    files = list(run_dir.iterdir())
    assert {p.name for p in files} >= {"model.keras", "run.json", "confusion_matrix.png"}
    assert {p.name: p.stat().st_mode & 0o777 for p in files} == {p.name: file for p in files}


# --------------------------------------------------------------------------- 3. sweep records


def test_resumed_sweep_reruns_tampered_and_misplaced_trial_records(tiny_dir, tmp_path):
    from digitlab.config import TrainConfig
    from digitlab.experiments.grid import trial_key

    out = tmp_path / "sweep"
    args = (
        "sweep",
        "--model",
        "gnb",
        "--set",
        "validation_size=20",
        "--seeds",
        "4",
        "--data-dir",
        tiny_dir,
        "--out",
        out,
    )
    first = digitlab(*args)
    assert first.returncode == 0, first.stderr
    files = sorted((out / "trials").iterdir())
    records = [json.loads(f.read_text()) for f in files]
    assert len(files) == 4
    good = dict(records[0])
    files[0].write_text(json.dumps({**good, "accuracy": "x"}))
    files[1].write_text(json.dumps({k: v for k, v in records[1].items() if k != "config"}))
    files[2].write_text(json.dumps({**records[2], "config": "mlp"}))
    files[3].write_text(json.dumps(good))  # another trial's record under this one's name

    again = digitlab(*args)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr + again.stdout
    reruns = [line for line in again.stdout.splitlines() if "running that trial again" in line]
    assert len(reruns) == 4, again.stdout
    assert "accuracy to be a number" in reruns[[str(files[0]) in r for r in reruns].index(True)]
    assert any(str(files[3]) in r and "another trial's" in r for r in reruns)
    assert "running 4 in this process" in again.stdout
    for file in files:
        record = json.loads(file.read_text())
        config = TrainConfig.from_dict(record["config"])
        assert trial_key(config, record["data_fingerprint"]) == file.stem
        assert isinstance(record["accuracy"], float)
    results = json.loads((out / "results.json").read_text())
    assert sorted(t["config"]["seed"] for t in results["trials"]) == [0, 1, 2, 3]


# --------------------------------------------------------------------------- 4. config values


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hidden", "999999999"], "--hidden: expected layers small enough to train in memory"),
        (["--hidden", ",".join(["100000"] * 30)], "--hidden: expected layers small enough"),
        (["--learning-rate", "inf"], "--learning-rate: expected a positive number, finite"),
        (["--learning-rate", "nan"], "--learning-rate: expected a positive number, finite"),
        (["--learning-rate", "1e308"], "--learning-rate: expected a positive number, finite"),
        (["--learning-rate", "1e30"], "--learning-rate: expected a rate at which training conv"),
        (["--seed", str(2**64)], "--seed: expected a non-negative integer below 2**32"),
        (["--seed", str(2**32)], "--seed: expected a non-negative integer below 2**32"),
    ],
)
def test_untrainable_values_are_one_line_and_leave_no_run(tiny_dir, tmp_path, args, message):
    run_dir = tmp_path / "run"
    done = digitlab(
        "train",
        "--data-dir",
        tiny_dir,
        "--validation-size",
        "20",
        "--epochs",
        "2",
        "--quiet",
        "--run-dir",
        run_dir,
        *args,
    )
    one_line_error(done, message)
    assert not run_dir.exists() and temporaries(tmp_path) == []


# --------------------------------------------------------------------------- 5. image files


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "symlink to /dev/zero"])
def test_predict_reads_regular_files_only(mlp_run, tmp_path, kind):
    image = tmp_path / "image.png"
    if kind == "fifo":
        os.mkfifo(image)
    elif kind == "/dev/zero":
        image = Path("/dev/zero")
    else:
        image.symlink_to("/dev/zero")
    start = time.perf_counter()
    done = digitlab("predict", mlp_run, image, timeout=60)
    one_line_error(done, f"{image}: expected a regular image file")
    assert time.perf_counter() - start < 30


# --------------------------------------------------------------------------- 6. model and run files


def _zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> None:
    """A zip file from ``(name, data as stored, method, crc, unpacked size)``."""
    import struct

    with open(path, "wb") as out:
        central = b""
        for name, data, method, crc, size in members:
            offset = out.tell()
            encoded = name.encode()
            fields = (20, 0, method, 0, 0, crc, len(data), size, len(encoded), 0)
            out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + encoded + data)
            central += (
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    20,
                    20,
                    0,
                    method,
                    0,
                    0,
                    crc,
                    len(data),
                    size,
                    len(encoded),
                    0,
                    0,
                    0,
                    0,
                    0,
                    offset,
                )
                + encoded
            )
        start = out.tell()
        out.write(central)
        out.write(
            struct.pack(
                "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), start, 0
            )
        )


def _zip_bomb(path: Path, original: Path, unpacked: int) -> None:
    """``original``'s Keras archive with its weights replaced by ``unpacked``
    bytes of zeros, deflated to a few MB (repeated fully flushed deflate blocks)."""
    import zlib

    chunk = 2**24
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    count = unpacked // chunk
    crc = 0
    zeros = bytes(chunk)
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    with zipfile.ZipFile(original) as archive:
        small = [
            (name, archive.read(name), 0, zlib.crc32(archive.read(name)), len(archive.read(name)))
            for name in ("metadata.json", "config.json")
        ]
    deflated = block * count + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    _zip(path, [*small, ("model.weights.h5", deflated, 8, crc, count * chunk)])


@pytest.mark.parametrize("unpacked", [3 * 2**30, 512 * 2**20])
def test_a_model_archive_that_unpacks_to_gigabytes_is_refused(mlp_run, unpacked):
    model = mlp_run / "model.keras"
    original = model.with_name("original.keras")
    model.rename(original)
    _zip_bomb(model, original, unpacked)
    assert model.stat().st_size < 8 * 2**20
    with zipfile.ZipFile(model) as archive:  # a real zip that really unpacks to that
        assert archive.getinfo("model.weights.h5").file_size == unpacked
        with archive.open("model.weights.h5") as member:
            assert member.read(2**20) == bytes(2**20)
    start = time.perf_counter()
    done = digitlab("predict", mlp_run, "--index", "0")
    one_line_error(done, f"{model}: expected a Keras model archive")
    assert time.perf_counter() - start < 30
    with pytest.raises(RunError, match="unpack"):
        load_run(mlp_run)


def test_a_sparse_30_gb_metrics_file_is_one_line(mlp_run):
    with open(mlp_run / "metrics.json", "r+b") as file:
        file.truncate(30 * 2**30)
    done = digitlab("evaluate", mlp_run)
    one_line_error(done, "metrics.json: expected at most", "MB of JSON")


def _tamper_skops(run: Path, change) -> None:
    import skops.io

    file = run / "model.skops"
    estimator = skops.io.load(file, trusted=skops.io.get_untrusted_types(file=file))
    estimator = change(estimator)
    file.unlink()
    skops.io.dump(estimator, file)


def _shift_classes(estimator):
    estimator.classes_ = np.arange(5, 15)
    return estimator


def _string_classes(estimator):
    estimator.classes_ = np.array([str(i) for i in range(10)])
    return estimator


def _ten_features(estimator):
    from sklearn.naive_bayes import GaussianNB

    rng = np.random.default_rng(0)
    return GaussianNB().fit(rng.random((100, 10)), np.arange(100) % 10)


@pytest.mark.parametrize(
    "change, message",
    [
        (_shift_classes, "expected classes in 0..9, one per class name. Found classes 5..14"),
        (_string_classes, "fitted on integer classes 0..9. Found classes ['0', '1'"),
        (_ten_features, "fitted on 784 pixels (28x28 images). Found 10 features"),
    ],
)
def test_a_tampered_skops_model_is_one_run_error(gnb_run, change, message):
    _tamper_skops(gnb_run, change)
    with pytest.raises(RunError) as error:
        load_run(gnb_run)
    assert message in str(error.value)
    one_line_error(digitlab("predict", gnb_run, "--index", "0"), message)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"class_names": ["a", "b", "c"]}, "expected 3 outputs, one per class name. Found 10"),
        ({"image_shape": [32, 32]}, "expected a model of (32, 32) images"),
    ],
)
def test_a_keras_model_that_does_not_fit_its_run_is_one_line(mlp_run, change, message):
    info = json.loads((mlp_run / "run.json").read_text())
    info["data"].update(change)
    (mlp_run / "run.json").write_text(json.dumps(info))
    one_line_error(digitlab("predict", mlp_run, "--index", "0"), message)


# --------------------------------------------------------------------------- 8. quick predict


@pytest.mark.parametrize("name", ["mlp-0.1.0", "cnn-fast-0.1.0"])
def test_quick_numpy_forward_pass_answers_like_keras(name, mnist):
    keras_run = load_run(FIXTURES / name)
    quick_run = load_run(FIXTURES / name, quick=True)
    assert quick_run.classifier.backend == "numpy"
    x = mnist.x_test[:500] / 255.0
    expected, found = keras_run.predict_proba(x), quick_run.predict_proba(x)
    assert found.dtype == np.float32 and found.shape == expected.shape
    np.testing.assert_allclose(found, expected, atol=1e-5)
    assert (found.argmax(1) == expected.argmax(1)).all()


def test_a_layer_numpy_does_not_compute_falls_back_to_keras(tmp_path, mlp_run):
    from digitlab.inference import numpy_keras

    model = mlp_run / "model.keras"
    with zipfile.ZipFile(model) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][2]["config"]["activation"] = "gelu"
    members["config.json"] = json.dumps(config).encode()
    changed = tmp_path / "gelu.keras"
    with zipfile.ZipFile(changed, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    assert numpy_keras.load(model) is not None
    assert numpy_keras.load(changed) is None


def test_predict_imports_neither_keras_nor_jax(mlp_run, mnist, tmp_path):
    seven = photo(tmp_path / "seven.png", mnist)
    script = (
        "import sys\nfrom digitlab.cli import main\n"
        f"code = main(['predict', {str(mlp_run)!r}, {str(seven)!r}])\n"
        f"code = code or main(['predict', {str(mlp_run)!r}, '--index', '0'])\n"
        "heavy = sorted(m for m in ('keras', 'jax', 'sklearn', 'matplotlib') if m in sys.modules)\n"
        "print('heavy:', heavy)\nsys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "heavy: []" in done.stdout


@pytest.mark.parametrize(
    "model, fields",
    [
        ("cnn", {}),
        ("mlp", {"hidden": (32, 16), "dropout_rate": 0.2, "activation": "selu"}),
        ("mlp", {"hidden": (8,), "activation": "swish"}),
        ("mlp", {"hidden": (8,), "activation": "elu"}),
        ("mlp", {"hidden": (8,), "activation": "sigmoid"}),
        ("cnn-fast", {"hidden": (16,), "activation": "tanh"}),
    ],
)
def test_quick_forward_pass_of_every_network_digitlab_builds(tmp_path, mnist, model, fields):
    from digitlab.config import TrainConfig
    from digitlab.inference import numpy_keras
    from digitlab.models import networks

    config = TrainConfig.for_model(model, **fields)
    keras_model = networks.build_model(config, (28, 28), 10, steps_per_epoch=10)
    file = tmp_path / "model.keras"
    keras_model.save(file)
    network = numpy_keras.load(file)
    assert network is not None
    x = (mnist.x_test[:64] / 255.0).astype(np.float32)
    np.testing.assert_allclose(network(x), np.asarray(keras_model(x)), atol=1e-5)


def test_a_resumed_sweep_removes_what_a_killed_one_left_half_written(tiny_dir, tmp_path):
    import io

    from digitlab import experiments
    from digitlab.config import TrainConfig
    from digitlab.data import load_dataset

    out = tmp_path / "sweep"
    (out / "trials").mkdir(parents=True)
    stale = [out / ".results.csv.0123456789ab.tmp.csv", out / "trials" / ".k.0123456789ab.tmp.json"]
    for file in stale:
        file.write_text("half")
        os.utime(file, (time.time() - 3600, time.time() - 3600))
    config = TrainConfig(model="gnb", validation_size=20, seed=0)
    experiments.run_sweep([config], out=out, dataset=load_dataset(tiny_dir), log=io.StringIO())
    assert not any(file.exists() for file in stale)
    assert (out / "results.csv").is_file()
