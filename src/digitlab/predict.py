"""Inference only: turn images into class probabilities.

This module imports no training code, so a server or a script that only
predicts loads quickly and stays small.
"""

from __future__ import annotations

import numpy as np


def predict_proba(model, x, *, batch_size: int = 1024) -> np.ndarray:
    """Softmax probabilities ``(n, k)`` float32 for images ``x`` ``(n, H, W)``
    float32 in [0, 1].

    ``model`` is a Keras model or any object with a ``predict_proba(x)``
    method (a loaded run, a scikit-learn baseline).  Keras models run batch by
    batch through ``predict_on_batch``, which skips ``predict``'s per-call
    set-up of callbacks and progress bars.
    """
    x = np.asarray(x, dtype=np.float32)
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(x), dtype=np.float32)
    if x.shape[0] == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    parts = [
        np.asarray(model.predict_on_batch(x[i : i + batch_size]))
        for i in range(0, x.shape[0], batch_size)
    ]
    return np.concatenate(parts).astype(np.float32, copy=False)
