"""Keras backend choice and seeding, in one place.

digitlab runs Keras 3 on JAX unless the user already chose a backend with
``KERAS_BACKEND``: on a CPU it trains the tutorial network 2-4x faster than the
TensorFlow or PyTorch backends.  This module must be imported before Keras.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
# Keras prints one line per model build about the backend on some versions, and
# TensorFlow (when it is the chosen backend) is chatty on import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def keras():
    """Return the ``keras`` module, imported with digitlab's backend choice."""
    import keras as _keras

    return _keras


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend so CPU runs repeat exactly."""
    keras().utils.set_random_seed(seed)
