"""Exported models run on onnxruntime: no JAX, no Keras, no scikit-learn.

:class:`OnnxClassifier` runs a ``model.onnx`` written by ``digitlab export``
behind the :class:`~digitlab.inference.classifier.Classifier` contract; the
run's temperature is inside the graph, so its own ``temperature`` stays 1.
:func:`load_exported` reads one with its JSON and checks it against the run.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from digitlab._files import one_line
from digitlab.errors import ConfigError, RunError
from digitlab.inference.classifier import Classifier

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
EXPORT_FORMAT = "digitlab-onnx"
MODEL_FILE = "model.onnx"


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "runtime: expected onnxruntime for --runtime onnx. Install it: "
            "pip install 'digitlab[export]'"
        ) from None
    return onnxruntime


def session_from_bytes(data, *, threads: int | None = None):
    """An onnxruntime CPU session of an ONNX model (bytes or a path)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    source = os.fspath(data) if isinstance(data, str | os.PathLike) else data
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxClassifier(Classifier):
    """An exported model (input ``images``, output ``probabilities``) on onnxruntime.

    onnxruntime sessions are thread-safe; ``run`` is called with the checked
    batch as it is.
    """

    backend = "onnxruntime"

    def __init__(self, session, *, class_names, image_shape, description: dict | None = None):
        super().__init__(session, class_names=class_names, image_shape=image_shape)
        self.description = description or {}
        inputs = {i.name: i.shape for i in session.get_inputs()}
        outputs = {o.name: o.shape for o in session.get_outputs()}
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise RunError(
                f"model: expected an ONNX model with input {INPUT_NAME!r} and output "
                f"{OUTPUT_NAME!r} (written by digitlab export). Found inputs "
                f"{sorted(inputs)} and outputs {sorted(outputs)}"
            )
        shape = tuple(inputs[INPUT_NAME][1:])
        if shape != self.image_shape:
            raise RunError(
                f"model: expected a model of {self.image_shape} images like the run's data. "
                f"Found one of {shape} images"
            )
        width = outputs[OUTPUT_NAME][-1]
        if width != self.num_classes:
            raise RunError(
                f"model: expected {self.num_classes} outputs, one per class name. Found {width}"
            )
        self._lock = threading.Lock()

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x)})[0]


def _read_description(file: Path) -> dict:
    if not file.is_file():
        raise RunError(
            f"{file.parent}: expected {file.name} beside the ONNX model (digitlab export "
            "writes both). It is missing"
        )
    try:
        data = json.loads(file.read_bytes()[: 16 * 2**20].decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{file}: expected JSON. {one_line(exc)}") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise RunError(
            f"{file}: expected a digitlab export description ('format': "
            f"{EXPORT_FORMAT!r}). Found something else"
        )
    return data


def load_exported(run_path, *, class_names, image_shape, source_sha256=None) -> OnnxClassifier:
    """The run's exported ``model.onnx`` on onnxruntime, checked against the run:
    the same classes and image shape, and (given ``source_sha256``) exported from
    the model file the run holds now."""
    folder = Path(run_path)
    file = folder / MODEL_FILE
    if not file.is_file() or file.is_symlink():
        raise RunError(
            f"{folder}: expected {MODEL_FILE} in the run folder for --runtime onnx. "
            f"Found none (run: digitlab export {folder} --format onnx)"
        )
    description = _read_description(file.with_suffix(".json"))
    if list(description.get("class_names", [])) != list(class_names):
        raise RunError(
            f"{file.with_suffix('.json')}: field 'class_names': expected the run's "
            f"{list(class_names)[:12]}. Found {description.get('class_names')!r:.80}"
        )
    recorded = (description.get("source") or {}).get("sha256")
    if source_sha256 is not None and recorded != source_sha256:
        raise RunError(
            f"{file}: expected an export of the run's model file as it is now. It was "
            f"exported from another one; export again (digitlab export {folder} --format onnx)"
        )
    try:
        session = session_from_bytes(file)
    except Exception as exc:  # onnxruntime raises its own types for a damaged file
        raise RunError(f"{file}: expected an ONNX model. {one_line(exc)}") from None
    try:
        return OnnxClassifier(
            session, class_names=class_names, image_shape=image_shape, description=description
        )
    except RunError as exc:
        raise RunError(f"{file}: {exc}") from None
