"""ONNX export of every model kind: on the 10,000 official test images the
exported model (real onnxruntime) gives digitlab's probabilities to 1e-5 and
the same classes; the JSON, the metadata and the model card say how to use it;
files digitlab did not write are never replaced."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import digitlab
from digitlab.export.bundle import shipped_detector
from digitlab.inference.detector import load_detector
from digitlab.runs import load_run
from predict_helpers import tiny_run

onnx = pytest.importorskip("onnx", reason="needs digitlab[export]")
ort = pytest.importorskip("onnxruntime", reason="needs digitlab[export]")

FIXTURES = Path(__file__).parent / "fixtures"
#: Kinds with a stored run folder (digitlab 0.1.0, not calibrated) are copied;
#: the others are trained here on 2,000 images (500 for svm), 1,000 held
#: out to calibrate on (temperature != 1).
STORED = {"cnn-fast": "cnn-fast-0.1.0", "gnb": "gnb-0.1.0"}
KINDS = ("mlp", "cnn", "cnn-fast", "rf", "logreg", "knn", "gnb", "bnb", "svm")


def _run_of(kind: str, mnist, tmp_path_factory) -> Path:
    if kind == "mlp":
        return tiny_run(mnist, tmp_path_factory)  # calibrated, shared with the other tests
    folder = tmp_path_factory.mktemp(f"export-{kind}") / "run"
    if kind in STORED:
        shutil.copytree(FIXTURES / STORED[kind], folder)
        return folder
    options = {"epochs": 1} if kind == "cnn" else {}
    # An SVM's prediction cost grows with its support vectors: 500 images.
    images = 1500 if kind == "svm" else 3000
    config = digitlab.TrainConfig.for_model(kind, validation_size=1000, **options)
    digitlab.train(config, mnist.head(images, 1000), run_dir=folder, verbose=0, plots_enabled=False)
    return folder


def _export(run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "digitlab", "export", str(run_dir), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_exports_and_matches_digitlab_on_the_official_test_set(
    kind, mnist, tmp_path_factory
):
    run_dir = _run_of(kind, mnist, tmp_path_factory)
    done = _export(run_dir, "--format", "onnx", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    files = {Path(name).name: size for name, size in summary["files"].items()}
    assert set(files) == {"model.onnx", "model.json", "model.md", "detector.onnx"}
    assert all(size > 0 for size in files.values())

    run = load_run(run_dir)
    x = mnist.x_test.astype(np.float32) / 255.0  # the 10,000 official test images
    want = run.predict_proba(x)
    session = ort.InferenceSession(str(run_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    got = session.run(["probabilities"], {"images": x})[0]
    assert got.shape == (10_000, 10) and got.dtype == np.float32
    assert float(np.abs(got - want).max()) <= 1e-5
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))
    # The temperature is in the graph: the same answers through digitlab's runtime.
    onnx_run = load_run(run_dir, runtime="onnx")
    assert onnx_run.classifier.backend == "onnxruntime"
    assert np.abs(onnx_run.predict_proba(x[:500]) - want[:500]).max() <= 1e-5

    description = json.loads((run_dir / "model.json").read_text())
    assert description["format"] == "digitlab-onnx"
    assert description["class_names"] == list("0123456789")
    assert description["image_shape"] == [28, 28]
    assert description["input"] == {
        "name": "images",
        "dtype": "float32",
        "shape": ["batch", 28, 28],
    }
    assert description["preprocessing"]["scale"] == "pixels / 255"
    assert "light ink" in description["preprocessing"]["polarity"]
    assert description["calibration"]["temperature"] == pytest.approx(run.info.temperature)
    assert description["calibration"]["applied_in_graph"] is True
    assert description["reading"]["threshold"] == 0.5
    assert "no digit" in description["reading"]["statuses"]
    assert description["detector"]["file"] == "detector.onnx"
    assert description["detector"]["threshold"] == pytest.approx(load_detector().threshold)
    assert description["export"]["check"]["max_abs_diff"] <= 1e-5
    if kind not in STORED:
        assert run.info.temperature != 1.0
    stored = onnx.load(str(run_dir / "model.onnx"))
    metadata = {p.key: p.value for p in stored.metadata_props}
    inside = json.loads(metadata["digitlab"])
    assert inside == {k: v for k, v in description.items() if k != "export"}
    card = (run_dir / "model.md").read_text()
    assert card.startswith("<!-- digitlab model card -->")
    accuracy = f"{run.metrics.accuracy:.4f}"
    for words in ("## Data", "## Accuracy", "## Calibration", "## Limits", accuracy):
        assert words in card


@pytest.mark.slow
def test_export_never_replaces_a_file_digitlab_did_not_write(mnist, tmp_path_factory, tmp_path):
    run_dir = _run_of("gnb", mnist, tmp_path_factory)
    foreign = tmp_path / "mine.onnx"
    foreign.write_bytes(b"my own model")
    done = _export(run_dir, "--format", "onnx", "--out", str(foreign))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "digitlab did not write it" in lines[0]
    assert foreign.read_bytes() == b"my own model"
    assert not (tmp_path / "mine.json").exists()

    # Its own export is replaced: export twice to the same place.
    target = tmp_path / "out" / "digits.onnx"
    for _ in range(2):
        done = _export(run_dir, "--format", "onnx", "--out", str(target))
        assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "detector.onnx",
        "digits.json",
        "digits.md",
        "digits.onnx",
    ]
    assert json.loads(target.with_suffix(".json").read_text())["model_file"] == "digits.onnx"

    # A web export needs a new or empty folder.
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "index.html").write_text("mine")
    done = _export(run_dir, "--format", "web", str(tmp_path / "taken"))
    assert done.returncode == 2 and "expected a new or empty folder" in done.stderr
    assert (tmp_path / "taken" / "index.html").read_text() == "mine"


def test_an_export_that_fails_leaves_no_file_not_even_the_detector(
    mnist, tmp_path_factory, tmp_path, monkeypatch
):
    from digitlab.errors import RunError
    from digitlab.export import bundle

    run = load_run(_run_of("gnb", mnist, tmp_path_factory))
    # A detector.onnx that digitlab did not write stops the export before any file is written.
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "detector.onnx").write_bytes(b"mine")
    with pytest.raises(RunError, match="detector.onnx.*digitlab did not write it"):
        bundle.export_onnx(run, tmp_path / "taken" / "digits.onnx")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["detector.onnx"]
    assert (tmp_path / "taken" / "detector.onnx").read_bytes() == b"mine"

    # An export whose check fails (no tolerance is met by a difference >= 0) writes nothing.
    monkeypatch.setattr(bundle, "CHECK_TOLERANCE", -1.0)
    (tmp_path / "new").mkdir()
    with pytest.raises(RunError, match="nothing was written"):
        bundle.export_onnx(run, tmp_path / "new" / "digits.onnx")
    assert list((tmp_path / "new").iterdir()) == []


def test_the_onnx_runtime_needs_an_export_and_refuses_a_stale_one(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / "gnb-0.1.0", run_dir)
    with pytest.raises(digitlab.RunError, match=r"expected model.onnx in the run folder"):
        load_run(run_dir, runtime="onnx")
    with pytest.raises(digitlab.RunError, match="runtime: expected one of native, onnx"):
        load_run(run_dir, runtime="tflite")
    from digitlab.export import export_onnx

    export_onnx(load_run(run_dir))
    assert load_run(run_dir, runtime="onnx").classifier.backend == "onnxruntime"
    # Another model file now: the export no longer describes the run.
    shutil.copyfile(FIXTURES / "gnb-0.1.0" / "model.skops", run_dir / "model.skops")
    model = run_dir / "model.skops"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(digitlab.RunError, match="exported from another one; export again"):
        load_run(run_dir, runtime="onnx")


def test_the_exported_detector_gives_digitlabs_not_a_digit_answers(tmp_path, mnist):
    """detector.onnx against digitlab's own detector: the same scores (<= 1e-5) and
    the same "not a digit" answers on the 10,000 test digits and on generated
    non-digits of every family."""
    from digitlab.data import negatives
    from digitlab.export.bundle import detector_hook
    from digitlab.export.converters import export_keras_onnx
    from digitlab.inference.images import frame_ink

    model, threshold = detector_hook(None)
    target = tmp_path / "detector.onnx"
    export_keras_onnx(model, target, {"format": "digitlab-onnx", "role": "detector"})
    made = negatives.generate(50, np.random.default_rng(5))
    x = np.concatenate(
        [mnist.x_test.astype(np.float32) / 255.0]
        + [np.stack([frame_ink(image) for image in images]) for images in made.values()]
    )
    want = load_detector().scores(x)
    # The packaged export, which `digitlab export` copies, gives the same answers.
    shipped = shipped_detector()
    assert shipped is not None, "stale: run digitlab.export.bundle.write_shipped_detector()"
    for graph in (str(target), shipped):
        session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        got = session.run(["probabilities"], {"images": x})[0][:, 1]
        assert float(np.abs(got - want).max()) <= 1e-5
        assert np.array_equal(got >= threshold, want >= threshold)


def test_a_stale_or_broken_packaged_detector_export_is_not_copied(tmp_path):
    from digitlab.export.bundle import detector_metadata, sha256_file
    from digitlab.inference.detector import MODEL_FILE

    source = tmp_path / "detector.keras"
    shutil.copyfile(MODEL_FILE, source)
    assert shipped_detector(source) is None  # no export beside it
    shutil.copyfile(MODEL_FILE.with_suffix(".onnx"), tmp_path / "detector.onnx")
    assert shipped_detector(source) == MODEL_FILE.with_suffix(".onnx").read_bytes()
    assert detector_metadata(source)["source_sha256"] == sha256_file(MODEL_FILE)
    source.write_bytes(source.read_bytes() + b"\0")  # another detector.keras: stale
    assert shipped_detector(source) is None
    shutil.copyfile(MODEL_FILE, source)
    (tmp_path / "detector.onnx").write_bytes(b"not onnx")
    assert shipped_detector(source) is None


def test_any_keras_model_exports_with_one_function(tmp_path):
    """The route the packaged "not a digit" detector will take: a Keras model of
    28x28 images to one probability, exported with its metadata."""
    from digitlab._backend import keras
    from digitlab.export import export_keras_onnx

    k = keras()
    model = k.Sequential(
        [k.Input(shape=(28, 28)), k.layers.Flatten(), k.layers.Dense(1, activation="sigmoid")]
    )
    target = tmp_path / "detector.onnx"
    seconds = export_keras_onnx(model, target, {"format": "digitlab-onnx", "role": "detector"})
    assert seconds > 0 and target.is_file()
    x = np.random.default_rng(0).random((16, 28, 28), dtype=np.float32)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"images": x})[0]
    assert got.shape == (16, 1)
    assert np.abs(got - np.asarray(model.predict(x, verbose=0))).max() <= 1e-6
    metadata = {p.key: p.value for p in onnx.load(str(target)).metadata_props}
    assert json.loads(metadata["digitlab"])["role"] == "detector"
