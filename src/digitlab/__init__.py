"""digitlab: the MNIST "Neural Network in Practice" tutorial as real software.

>>> import digitlab
>>> run = digitlab.train()                       # the tutorial, exactly
>>> run.metrics.accuracy                         # ~0.93 on the 15,000 held-out images
>>> run = digitlab.load_run(run.path)            # everything predict/evaluate/serve need

Keras runs on the JAX backend unless ``KERAS_BACKEND`` says otherwise.  The
public names are imported lazily, so ``import digitlab`` stays fast and the
data tools never load Keras.
"""

from __future__ import annotations

import importlib

from digitlab import _backend  # noqa: F401  (chooses the Keras backend before Keras loads)
from digitlab.errors import (
    ConfigError,
    DataError,
    DigitlabError,
    FetchError,
    ImageError,
    RunError,
)

__version__ = "0.1.0"

_LAZY = {
    "TrainConfig": "digitlab.config",
    "Dataset": "digitlab.data",
    "load_mnist": "digitlab.data",
    "load_idx_folder": "digitlab.data",
    "load_dataset": "digitlab.data",
    "split": "digitlab.data",
    "DATASETS": "digitlab.data",
    "read_idx": "digitlab.data.idx",
    "write_idx": "digitlab.data.idx",
    "build_model": "digitlab.models",
    "train": "digitlab.training",
    "evaluate": "digitlab.evaluation",
    "Evaluation": "digitlab.evaluation",
    "load_run": "digitlab.runs",
    "Run": "digitlab.runs",
    "ModelKind": "digitlab.models",
    "TrainResult": "digitlab.models",
    "register_model": "digitlab.models",
}

__all__ = [
    "ConfigError",
    "DataError",
    "DigitlabError",
    "FetchError",
    "ImageError",
    "RunError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'digitlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
