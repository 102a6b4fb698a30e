"""The model stage: the registry of model kinds and the built-in kinds.

* :mod:`digitlab.models.registry` - the contract (:class:`ModelKind`,
  :class:`TrainResult`, :func:`register`, :func:`get`, :func:`names`).
* :mod:`digitlab.models.keras_kinds` - mlp, cnn, cnn-deep, cnn-fast (Keras).
* :mod:`digitlab.models.baselines` - rf, logreg, knn, gnb, bnb, svm (scikit-learn).
* :mod:`digitlab.models.networks` - the Keras builders (imports Keras).

Importing this package registers the built-in kinds without importing Keras
or scikit-learn.
"""

# isort: off
# The built-in kinds register in this order: the tutorial's first, then the baselines.
from digitlab.models import keras_kinds  # noqa: F401
from digitlab.models import baselines  # noqa: F401

# isort: on
from digitlab.models.registry import (
    ModelKind,
    TrainResult,
    default_engine,
    defaults_for,
    get,
    kinds,
    names,
    register,
    unregister,
)

#: ``digitlab.register_model``: the same as :func:`register`.
register_model = register

__all__ = [
    "ModelKind",
    "TrainResult",
    "build_model",
    "default_engine",
    "defaults_for",
    "get",
    "kinds",
    "names",
    "register",
    "register_model",
    "unregister",
]


def build_model(config, input_shape, num_classes, *, steps_per_epoch=None):
    """Build and compile the Keras network ``config.model`` names (see
    :func:`digitlab.models.networks.build_model`)."""
    from digitlab.models.networks import build_model as build

    return build(config, input_shape, num_classes, steps_per_epoch=steps_per_epoch)
