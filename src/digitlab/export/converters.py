"""Model objects to ONNX: a Keras model (through jax2onnx) or a scikit-learn
estimator (through skl2onnx), each finished to digitlab's contract
(:mod:`digitlab.export.graph`).

:func:`export_keras_onnx` takes any Keras model of images to probabilities:
digitlab's networks, and the packaged "not a digit" detector when it lands
(see :func:`digitlab.export.bundle.detector_hook`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from digitlab import _files
from digitlab.errors import ConfigError, RunError
from digitlab.export.graph import finish

#: How to get what ``digitlab export`` needs, in the one-line errors.
INSTALL_HINT = "pip install 'digitlab[export]' && pip install --no-deps 'jax2onnx>=0.17.1,<0.18'"


def _need(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"export: expected the package {module} for ONNX export. Install it: {INSTALL_HINT}"
        ) from None


@contextlib.contextmanager
def _lean_plugins():
    """jax2onnx with only the plugins whose targets import here.

    jax2onnx registers plugins for Flax and Equinox layers too, and patches
    their classes while converting, which imports them; digitlab's models are
    plain JAX, so plugins for libraries that are not installed are set aside
    for the conversion (jax2onnx is installed without its declared
    dependencies: see the README)."""
    jax2onnx_log = logging.getLogger("jax2onnx")
    level = jax2onnx_log.level
    jax2onnx_log.setLevel(logging.CRITICAL)  # its plugin scan logs every skipped example
    removed = {}
    try:
        from jax2onnx.plugins import plugin_system

        plugin_system.import_all_plugins()
        registry = plugin_system.PLUGIN_REGISTRY
        for key, plugin in list(registry.items()):
            if not isinstance(plugin, plugin_system.PrimitiveLeafPlugin):
                continue
            for spec in plugin.__class__.binding_specs():
                target = getattr(spec, "target", None)
                if not isinstance(target, str):
                    continue
                try:
                    importlib.import_module(target.rpartition(".")[0] or target)
                except ImportError:
                    removed[key] = registry.pop(key)
                    break
        yield
    finally:
        if removed:
            registry.update(removed)
        jax2onnx_log.setLevel(level)


def keras_to_onnx(model):
    """The raw ONNX graph of a Keras model (JAX backend), as an ``onnx.ModelProto``."""
    from digitlab._backend import keras

    if keras().backend.backend() != "jax":
        raise ConfigError(
            "export: expected the JAX backend for ONNX export (KERAS_BACKEND=jax). "
            f"Received: {keras().backend.backend()}"
        )
    for module in ("onnx", "onnx_ir", "jax2onnx"):
        _need(module)
    import onnx

    input_shape = tuple(model.input_shape[1:])
    model(np.zeros((1, *input_shape), dtype=np.float32))  # Keras exports called models only
    with tempfile.TemporaryDirectory(prefix="digitlab-export-") as folder:
        raw = Path(folder) / "raw.onnx"
        with _lean_plugins():
            model.export(str(raw), format="onnx", verbose=False)
        return onnx.load(str(raw))


def keras_onnx_bytes(model, metadata: dict | None = None, *, temperature: float = 1.0) -> bytes:
    """Any Keras model of images ``(n, *shape)`` float32 to probabilities
    ``(n, k)``, serialized as ONNX with digitlab's input and output names and
    ``metadata`` in the file; ``temperature`` (a run's calibration) is applied
    in the graph."""
    proto = finish(
        keras_to_onnx(model),
        image_shape=tuple(int(s) for s in model.input_shape[1:]),
        num_classes=int(model.output_shape[-1]),
        temperature=temperature,
        metadata=metadata,
    )
    return proto.SerializeToString()


def export_keras_onnx(model, path, metadata: dict | None = None, *, temperature: float = 1.0):
    """Write :func:`keras_onnx_bytes` of the model to ``path`` (atomically);
    return the seconds it took."""
    start = time.perf_counter()
    _files.write_bytes(path, keras_onnx_bytes(model, metadata, temperature=temperature))
    return time.perf_counter() - start


def sklearn_to_onnx(estimator, *, image_shape, num_classes: int, temperature: float = 1.0):
    """A fitted scikit-learn classifier as an ONNX model of digitlab's contract,
    computing in float64 as scikit-learn does."""
    for module in ("onnx", "skl2onnx"):
        _need(module)
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType

    classes = np.asarray(estimator.classes_)
    pixels = int(np.prod(image_shape))
    options = {"zipmap": False}
    if type(estimator).__name__ == "KNeighborsClassifier":
        # onnxruntime's CDist operator (com.microsoft): the portable graph loops
        # with Scan, 45x slower (138 s against 3 s for 10,000 queries of 3,000 images).
        options["optim"] = "cdist"
    try:
        raw = convert_sklearn(
            estimator,
            initial_types=[("flat_pixels", DoubleTensorType([None, pixels]))],
            options={id(estimator): options},
        )
    except Exception as exc:  # skl2onnx raises many types for an estimator it cannot convert
        raise RunError(
            f"model: expected an estimator skl2onnx can convert. "
            f"{type(estimator).__name__}: {_files.one_line(exc)}"
        ) from None
    return finish(
        raw,
        image_shape=image_shape,
        num_classes=num_classes,
        output="probabilities",
        flatten=True,
        double=True,
        columns=[int(c) for c in classes],
        renormalise=True,
        temperature=temperature,
    )
