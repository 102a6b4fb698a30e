"""Take a model anywhere: ONNX files and a static web page (needs ``digitlab[export]``).

* :mod:`~digitlab.export.graph` - digitlab's ONNX contract (input ``images``,
  output calibrated ``probabilities``) and the metadata.
* :mod:`~digitlab.export.converters` - Keras (jax2onnx) and scikit-learn
  (skl2onnx) to ONNX; :func:`export_keras_onnx` exports any Keras model.
* :mod:`~digitlab.export.bundle` - ``digitlab export --format onnx``: the
  file, its JSON, its model card; the "not a digit" detector hook.
* :mod:`~digitlab.export.web` - ``digitlab export --format web``: a folder
  any static file server serves, that reads digits in the browser.

Nothing here is imported by training, predicting or serving.
"""

from __future__ import annotations


def export_onnx(run, out=None) -> dict:
    """See :func:`digitlab.export.bundle.export_onnx`."""
    from digitlab.export.bundle import export_onnx as _export

    return _export(run, out)


def export_web(run, folder) -> dict:
    """See :func:`digitlab.export.web.export_web`."""
    from digitlab.export.web import export_web as _export

    return _export(run, folder)


def export_keras_onnx(model, path, metadata=None, *, temperature: float = 1.0) -> float:
    """See :func:`digitlab.export.converters.export_keras_onnx`."""
    from digitlab.export.converters import export_keras_onnx as _export

    return _export(model, path, metadata, temperature=temperature)


__all__ = ["export_keras_onnx", "export_onnx", "export_web"]
