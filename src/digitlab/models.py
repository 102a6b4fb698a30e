"""Model builders, one small function per architecture, in one registry.

Every builder takes the resolved :class:`~digitlab.config.TrainConfig`, the
input image shape (e.g. ``(28, 28)``) and the number of classes, and returns an
uncompiled ``keras.Model`` that maps float32 images in [0, 1] of that shape to
softmax probabilities.  :func:`build_model` looks the builder up and compiles
the model with the config's optimizer and categorical cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable

from digitlab._backend import keras
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError

Builder = Callable[[TrainConfig, tuple[int, ...], int], "keras.Model"]
MODELS: dict[str, Builder] = {}


def register(name: str):
    """Decorator adding a builder to :data:`MODELS` under ``name``."""

    def add(builder: Builder) -> Builder:
        MODELS[name] = builder
        return builder

    return add


@register("mlp")
def build_mlp(config: TrainConfig, input_shape: tuple[int, ...], num_classes: int):
    """The tutorial's network: flatten, ``Dense(h, activation)`` per hidden size
    (optional dropout after each), ``Dense(num_classes, softmax)``.

    With the defaults (one hidden layer of 128) it has 101,770 parameters.
    """
    k = keras()
    layers = [k.Input(shape=input_shape), k.layers.Flatten()]
    for units in config.hidden:
        layers.append(k.layers.Dense(units, activation=config.activation))
        if config.dropout_rate:
            layers.append(k.layers.Dropout(config.dropout_rate))
    layers.append(k.layers.Dense(num_classes, activation="softmax"))
    return k.Sequential(layers, name="mlp")


def build_model(config: TrainConfig, input_shape: tuple[int, ...], num_classes: int):
    """Build and compile the model named by ``config.model``."""
    try:
        builder = MODELS[config.model]
    except KeyError:
        raise ConfigError(
            f"model: expected one of {', '.join(sorted(MODELS))}. Received: model={config.model!r}"
        ) from None
    model = builder(config, tuple(input_shape), num_classes)
    model.compile(
        optimizer=make_optimizer(config),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def make_optimizer(config: TrainConfig):
    """The Keras optimizer named by the config, at its own default learning
    rate unless ``config.learning_rate`` is set (SGD's default is 0.01)."""
    k = keras()
    classes = {
        "sgd": k.optimizers.SGD,
        "adam": k.optimizers.Adam,
        "adamw": k.optimizers.AdamW,
        "rmsprop": k.optimizers.RMSprop,
        "nadam": k.optimizers.Nadam,
    }
    kwargs = {} if config.learning_rate is None else {"learning_rate": config.learning_rate}
    return classes[config.optimizer](**kwargs)
