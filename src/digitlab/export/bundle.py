"""``digitlab export RUN --format onnx``: the model file, its JSON and its card.

:func:`export_onnx` writes three files (by default into the run folder):

* ``model.onnx``: input ``images`` float32 ``(batch, H, W)`` (pixels / 255,
  light ink on dark, framed like MNIST), output ``probabilities`` float32
  ``(batch, k)``, calibrated in the graph; the JSON below is also in its
  metadata (key ``digitlab``);
* ``model.json``: what a consumer needs to use it right (:func:`describe`);
* ``model.md``: a short model card (:mod:`digitlab.export.card`).

Files are written atomically and only over files digitlab exported.  The
export is checked before it is written: onnxruntime and digitlab must agree to
1e-5 on a seeded batch of images.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from digitlab import __version__, _files
from digitlab.errors import RunError
from digitlab.export.card import CARD_MARK
from digitlab.export.graph import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, get_metadata

FORMAT = "digitlab-onnx"
FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
#: The packaged "not a digit" detector, exported beside digit models (see :func:`detector_hook`).
DETECTOR_FILE = "detector.onnx"
#: The largest difference from digitlab's own probabilities an export may show.
CHECK_TOLERANCE = 1e-5
_READING_THRESHOLD = 0.5


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_model_file(run) -> Path:
    """The run's own model file (``model.keras``, ``model.skops``)."""
    model_format = run.model_format
    if model_format is None:
        raise RunError(f"{run.path}: expected a model file in the run folder. Found none")
    return Path(run.path) / model_format.file_name


def reading_rules(threshold: float = _READING_THRESHOLD) -> dict:
    """How digitlab turns probabilities into an answer (``read_image``'s statuses)."""
    from digitlab.inference import reading

    return {
        "threshold": threshold,
        "statuses": {
            reading.STATUS_OK: "the best class has probability >= threshold",
            reading.STATUS_NOT_SURE: "the best class has probability < threshold",
            reading.STATUS_NO_DIGIT: "no ink found (reason 'blank'), or a crop the "
            "detector scores below its threshold (reason 'not a digit')",
        },
        "no_digit_rule": (
            "a drawing or photo is 'no digit' when no mark is found: ink is a pixel "
            "at least 0.2 darker (lighter) than the paper relative to it, and marks "
            "smaller than 4% of the image's shorter side are specks; a ready 28x28 "
            f"array is blank when no pixel reaches {reading._BLANK_LEVEL}"
        ),
    }


def describe(run, *, model_file: str, detector: dict | None = None) -> dict:
    """The JSON written beside the ONNX file (and into its metadata)."""
    info, metrics = run.info, run.metrics
    calibration = dict(info.calibration or {})
    source = source_model_file(run)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_by": f"digitlab {__version__}",
        "model_file": model_file,
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "shape": ["batch", *run.image_shape],
        },
        "output": {
            "name": OUTPUT_NAME,
            "dtype": "float32",
            "shape": ["batch", len(run.class_names)],
            "meaning": "calibrated probabilities, one column per class name; rows sum to 1",
        },
        "class_names": list(run.class_names),
        "image_shape": list(run.image_shape),
        "preprocessing": {
            "scale": "pixels / 255",
            "range": [0.0, 1.0],
            "polarity": "light ink (1.0) on a dark background (0.0)",
            "framing": (
                "like MNIST: the ink's longer side scaled to 20 px, its centre of mass on "
                "pixel (14, 14) of 28x28 (digitlab.inference.images.prepare_digit; the web "
                "export's frame.js for a drawn canvas)"
                if run.is_digits
                else "like Fashion-MNIST: trimmed, longer side to the frame, centred"
            ),
        },
        "calibration": {
            "temperature": info.temperature,
            "applied_in_graph": True,
            "formula": "probabilities = softmax(log(p) / temperature), p: the model's own",
            **{k: v for k, v in calibration.items() if k != "temperature"},
        },
        "reading": reading_rules(),
        # The "not a digit" detector's file and threshold (None for classes
        # that are not the ten digits).
        "detector": detector,
        "run": {
            "folder": Path(run.path).name,
            "model": run.config.model,
            "created": info.created,
            "params": run.params,
            "size_unit": info.size_unit,
            "data": info.data.name,
            "metrics": {
                key: getattr(metrics, key)
                for key in ("set", "size", "accuracy", "loss", "ece", "macro_f1")
            },
        },
        "source": {"file": source.name, "sha256": sha256_file(source)},
    }


def detector_hook(run) -> tuple[object, float]:
    """The "not a digit" detector to export beside a digit model, as
    ``(keras_model, threshold)``: digitlab's shipped detector
    (:mod:`digitlab.inference.detector`; 28x28 float in [0, 1], light on dark
    -> ``(n, 2)`` probabilities of not a digit and of a digit).  The export
    converts it only where its packaged ONNX file is not current
    (:func:`shipped_detector`)."""
    del run
    import digitlab.layers  # noqa: F401  (registers the saved layers)
    from digitlab._backend import keras
    from digitlab.inference.detector import MODEL_FILE, load_detector

    return keras().models.load_model(MODEL_FILE), load_detector().threshold


def detector_metadata(source: Path | None = None) -> dict:
    """What the detector's ONNX file says of itself: digitlab's format, its
    role, and the SHA-256 of the ``detector.keras`` (by default the packaged
    one) it was exported from."""
    from digitlab.inference.detector import MODEL_FILE

    digest = sha256_file(source or MODEL_FILE)
    return {"format": FORMAT, "role": "detector", "source_sha256": digest}


def shipped_detector(source: Path | None = None) -> bytes | None:
    """The ONNX export beside ``source`` (by default the packaged
    ``inference/assets/detector.keras``: its ``detector.onnx``, written by
    :func:`write_shipped_detector`) if it is the export of that very file:
    copying it spares every export the ~8 s of converting the detector again.
    None if it is missing, unreadable or stale."""
    import onnx

    from digitlab.inference.detector import MODEL_FILE

    source = source or MODEL_FILE
    try:
        data = source.with_suffix(".onnx").read_bytes()
        metadata = get_metadata(onnx.load_from_string(data))
    except Exception:  # missing or unreadable: convert instead
        return None
    return data if metadata == detector_metadata(source) else None


def write_shipped_detector() -> Path:
    """Export the packaged detector to ``inference/assets/detector.onnx`` (after
    retraining it: ``python -c "from digitlab.export.bundle import
    write_shipped_detector as w; w()"``)."""
    from digitlab.export.converters import export_keras_onnx
    from digitlab.inference.detector import MODEL_FILE

    model, _ = detector_hook(None)
    target = MODEL_FILE.with_suffix(".onnx")
    export_keras_onnx(model, target, detector_metadata())
    return target


def _detector(run) -> tuple[dict, bytes] | None:
    """What a digit model's export says of its detector, and the detector's
    ONNX file; written by :func:`export_onnx` only once the model's export
    has passed its check."""
    if not run.is_digits:
        return None
    start = time.perf_counter()
    data = shipped_detector()  # the packaged detector's export, when current
    if data is not None:
        from digitlab.inference.detector import load_detector

        threshold = load_detector().threshold
    else:
        from digitlab.export.converters import keras_onnx_bytes

        model, threshold = detector_hook(run)
        data = keras_onnx_bytes(model, detector_metadata())
    seconds = time.perf_counter() - start
    entry = {
        "file": DETECTOR_FILE,
        "threshold": float(threshold),
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", 28, 28]},
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", 2],
            "meaning": "probabilities of (not a digit, a digit); column 1 is the digit score",
        },
        "rule": "run on every framed 28x28 crop; any crop whose digit score is below "
        "threshold makes the answer status 'no digit' (reason 'not a digit')",
        "export_seconds": round(seconds, 3),
    }
    return entry, data


# --------------------------------------------------------------------------- targets


def _is_ours(path: Path) -> bool:
    try:
        if path.suffix == ".onnx":
            import onnx

            metadata = get_metadata(onnx.load(str(path), load_external_data=False))
            return bool(metadata) and metadata.get("format") == FORMAT
        if path.suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
        with open(path, encoding="utf-8") as file:
            return file.readline().strip() == CARD_MARK
    except Exception:  # unreadable, not ONNX, not JSON: not one digitlab wrote
        return False


def check_target(path: Path) -> Path:
    """Refuse to write over a file digitlab did not export (or a link, a folder)."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise RunError(
            f"{path}: expected a new file or one digitlab exported. Found something else"
        )
    if path.exists() and not _is_ours(path):
        raise RunError(
            f"{path}: expected a new file or one digitlab exported. It exists and digitlab "
            "did not write it; choose another --out"
        )
    return path


def targets(run, out: Path | None) -> tuple[Path, Path, Path]:
    """The ONNX file, its JSON and its card: ``out`` (default ``RUN/model.onnx``),
    then the same name with ``.json`` and ``.md``."""
    onnx_file = Path(out) if out is not None else Path(run.path) / MODEL_FILE
    if onnx_file.suffix != ".onnx":
        raise RunError(f"--out: expected a file name ending in .onnx. Received: {onnx_file}")
    return onnx_file, onnx_file.with_suffix(".json"), onnx_file.with_suffix(".md")


# --------------------------------------------------------------------------- export


def build_proto(run):
    """The run's model as an ONNX model of digitlab's contract, and the seconds it took."""
    from digitlab.export import converters
    from digitlab.inference.classifier import SklearnClassifier

    start = time.perf_counter()
    classifier = run.classifier
    if isinstance(classifier, SklearnClassifier):
        proto = converters.sklearn_to_onnx(
            classifier.model,
            image_shape=run.image_shape,
            num_classes=len(run.class_names),
            temperature=run.info.temperature,
        )
    elif hasattr(classifier.model, "stateless_call"):  # a Keras model
        from digitlab.export.graph import finish

        proto = finish(
            converters.keras_to_onnx(classifier.model),
            image_shape=run.image_shape,
            num_classes=len(run.class_names),
            temperature=run.info.temperature,
        )
    else:
        raise RunError(
            f"{run.path}: expected a Keras or scikit-learn model to export. "
            f"Found {type(classifier.model).__name__}"
        )
    return proto, time.perf_counter() - start


def check_proto(run, data: bytes, *, count: int = 64, seed: int = 0) -> float:
    """The largest difference between onnxruntime's and digitlab's probabilities
    on ``count`` seeded images; :class:`RunError` above :data:`CHECK_TOLERANCE`."""
    from digitlab.inference.onnx_runtime import session_from_bytes

    rng = np.random.default_rng(seed)
    x = rng.random((count, *run.image_shape), dtype=np.float32)
    x *= rng.random((count, *run.image_shape), dtype=np.float32) < 0.25  # sparse strokes
    x[0] = 0.0
    session = session_from_bytes(data)
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    want = run.predict_proba(x)
    diff = float(np.abs(got - want).max())
    if not diff <= CHECK_TOLERANCE:
        raise RunError(
            f"{run.path}: the ONNX export differs from digitlab's own answers by {diff:.2e} "
            f"(more than {CHECK_TOLERANCE:g}); nothing was written"
        )
    return diff


def export_onnx(run, out: Path | None = None) -> dict:
    """Export a loaded run (``load_run(path)``, not ``quick``) as ONNX; return a
    summary: the files written, their sizes, the export seconds and the check."""
    from digitlab.export import card, graph

    onnx_file, json_file, card_file = targets(run, out)
    files = [onnx_file, json_file, card_file]
    detector, detector_data = _detector(run) or (None, None)
    if detector is not None:
        files.append(onnx_file.parent / DETECTOR_FILE)
    for path in files:
        check_target(path)
    proto, seconds = build_proto(run)
    description = describe(run, model_file=onnx_file.name, detector=detector)
    graph.set_metadata(proto, description)
    data = proto.SerializeToString()
    difference = check_proto(run, data)
    description["export"] = {
        "seconds": round(seconds, 3),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "check": {"images": 64, "max_abs_diff": difference, "tolerance": CHECK_TOLERANCE},
    }
    if detector is not None:
        _files.write_bytes(onnx_file.parent / DETECTOR_FILE, detector_data)
    _files.write_bytes(onnx_file, data)
    _files.write_text(json_file, json.dumps(description, indent=2) + "\n")
    _files.write_text(card_file, card.model_card(run, description))
    return {
        "format": "onnx",
        "files": {str(p): p.stat().st_size for p in files},
        "export_seconds": round(seconds, 3),
        "max_abs_diff": difference,
        "temperature": run.info.temperature,
        "metadata_key": METADATA_KEY,
    }
