"""The Keras networks, one small builder function per architecture.

Every builder takes the resolved :class:`~digitlab.config.TrainConfig`, the
input image shape (e.g. ``(28, 28)``) and the number of classes, and returns an
uncompiled ``keras.Model`` that maps float32 images in [0, 1] of that shape to
softmax probabilities.  :func:`build_model` looks the builder up and compiles
the model with the config's optimizer and categorical cross-entropy.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from digitlab._backend import keras
from digitlab.errors import ConfigError
from digitlab.layers import Augmentation, MaxPool2x2

Builder = Callable[..., object]
#: The builder of each Keras model kind (see :mod:`digitlab.models.keras_kinds`).
BUILDERS: dict[str, Builder] = {}


def register(name: str):
    """Decorator adding a builder to :data:`BUILDERS` under ``name``."""

    def add(builder: Builder) -> Builder:
        BUILDERS[name] = builder
        return builder

    return add


@register("mlp")
def build_mlp(config, input_shape: tuple[int, ...], num_classes: int):
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


@register("cnn")
def build_cnn(config, input_shape: tuple[int, ...], num_classes: int):
    """The strong model.  Each 2x2 block of pixels is first folded into 4
    channels (28x28x1 → 14x14x4), so no layer works at full size: on a CPU a
    first convolution at 28x28 took over a quarter of the training step for
    3% of the arithmetic.  Then ``Conv2D(3x3, same) -> BatchNorm -> activation``
    with 32 and 64 filters, a 2x2 max-pool, the same with 128 filters and a
    max-pool (14 → 7 → 3 pixels), then ``Dense(h) -> BatchNorm -> activation``
    per hidden size, dropout and ``Dense(num_classes, softmax)``.  With
    ``config.augment`` the images are randomly rotated, zoomed and shifted
    first, in training only.

    With one hidden layer of 128 it has 243,466 parameters.  Its defaults
    (in :mod:`digitlab.models.keras_kinds`) train it with Adam, a cosine
    learning rate, label smoothing and augmentation for 15 epochs.
    """
    return _convnet(
        config,
        input_shape,
        num_classes,
        stages=((32, 64), (128,)),
        space_to_depth=True,
        name="cnn",
    )


@register("cnn-deep")
def build_cnn_deep(config, input_shape: tuple[int, ...], num_classes: int):
    """:func:`build_cnn` with five convolutions instead of three: 32, 32 and
    64 filters at 14x14, a max-pool, 64 and 128 at 7x7 and a max-pool, then
    the same head.  A member for ensembles: about 1.5x the arithmetic of
    ``cnn`` per image (11.2 vs 7.6 million multiply-adds).

    With one hidden layer of 128 it has 289,930 parameters and ``cnn``'s
    training defaults.
    """
    return _convnet(
        config,
        input_shape,
        num_classes,
        stages=((32, 32, 64), (64, 128)),
        space_to_depth=True,
        name="cnn_deep",
    )


@register("cnn-fast")
def build_cnn_fast(config, input_shape: tuple[int, ...], num_classes: int):
    """A quick convnet: each 2x2 block of pixels is first folded into 4
    channels (28x28x1 → 14x14x4, so no layer works at full size), then two
    blocks like :func:`build_cnn`'s with 32 and 64 filters (14 → 7 → 3 pixels)
    and the same head as :func:`build_cnn`.

    With one hidden layer of 128 it has 95,498 parameters.  Its defaults train
    it for one epoch of batch 32.
    """
    return _convnet(
        config,
        input_shape,
        num_classes,
        stages=((32,), (64,)),
        space_to_depth=True,
        name="cnn_fast",
    )


def _convnet(config, input_shape, num_classes, *, stages, space_to_depth=False, name):
    """Stages of 3x3 convolutions, each stage ending in a 2x2 max-pool, then
    the dense head; images (h, w) or (h, w, channels), channels last."""
    k = keras()
    height, width, channels = (*input_shape, 1) if len(input_shape) == 2 else input_shape
    layers = [k.Input(shape=input_shape), k.layers.Reshape((height, width, channels))]
    if config.augment:
        layers.append(Augmentation(elastic=config.elastic))
    if space_to_depth:
        if height % 2 or width % 2:
            raise ConfigError(
                f"model: {config.model} expects images of even height and width. "
                f"Received: input_shape={input_shape}"
            )
        # (h, w, c) → (h/2, w/2, 4c): every 2x2 block of pixels becomes one.
        layers += [
            k.layers.Reshape((height // 2, 2, width // 2, 2, channels)),
            k.layers.Permute((1, 3, 2, 4, 5)),
            k.layers.Reshape((height // 2, width // 2, 4 * channels)),
        ]
    for stage in stages:
        for filters in stage:
            layers += [
                # "same" padding: XLA:CPU runs these 3-5x faster than "valid" ones
                # (benchmarks/bench_conv.py); the bias is redundant before BatchNorm.
                k.layers.Conv2D(filters, 3, padding="same", use_bias=False),
                k.layers.BatchNormalization(),
                k.layers.Activation(config.activation),
            ]
        layers.append(MaxPool2x2())
    layers.append(k.layers.Flatten())
    for units in config.hidden:
        layers += [
            k.layers.Dense(units, use_bias=False),
            k.layers.BatchNormalization(),
            k.layers.Activation(config.activation),
        ]
    if config.dropout_rate:
        layers.append(k.layers.Dropout(config.dropout_rate))
    layers.append(k.layers.Dense(num_classes, activation="softmax"))
    return k.Sequential(layers, name=name)


def build_model(
    config,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    steps_per_epoch: int | None = None,
):
    """Build and compile the model named by ``config.model``.

    ``steps_per_epoch`` (batches per epoch) is needed by a ``"cosine"``
    learning-rate schedule, which is set per batch.
    """
    try:
        builder = BUILDERS[config.model]
    except KeyError:
        raise ConfigError(
            f"model: expected one of {', '.join(BUILDERS)}. Received: model={config.model!r}"
        ) from None
    model = builder(config, tuple(input_shape), num_classes)
    if config.augment and not any(isinstance(layer, Augmentation) for layer in model.layers):
        raise ConfigError(
            f"augment: expected a model that augments its images (cnn, cnn-deep, cnn-fast). "
            f"Received: model={config.model!r}"
        )
    loss = (
        keras().losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        if config.label_smoothing
        else "categorical_crossentropy"
    )
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch=steps_per_epoch),
        loss=loss,
        metrics=["accuracy"],
    )
    return model


def make_optimizer(config, *, steps_per_epoch: int | None = None):
    """The Keras optimizer named by the config, at its own default learning
    rate unless ``config.learning_rate`` is set (SGD's default is 0.01).

    ``lr_schedule="cosine"`` warms the rate up linearly from a tenth of it over
    the first tenth of training (at most one epoch), then lowers it along a
    cosine to 0 at the last batch; it needs ``steps_per_epoch``.
    """
    k = keras()
    classes = {
        "sgd": k.optimizers.SGD,
        "adam": k.optimizers.Adam,
        "adamw": k.optimizers.AdamW,
        "rmsprop": k.optimizers.RMSprop,
        "nadam": k.optimizers.Nadam,
    }
    optimizer_class = classes[config.optimizer]
    kwargs = {} if config.learning_rate is None else {"learning_rate": config.learning_rate}
    if config.lr_schedule == "cosine":
        if not steps_per_epoch or steps_per_epoch < 1:
            raise ConfigError(
                "lr_schedule: 'cosine' needs the number of batches per epoch. "
                f"Received: steps_per_epoch={steps_per_epoch!r}"
            )
        rate = config.learning_rate
        if rate is None:
            rate = inspect.signature(optimizer_class).parameters["learning_rate"].default
        kwargs["learning_rate"] = _cosine_schedule(rate, config.epochs, steps_per_epoch)
    return optimizer_class(**kwargs)


def _cosine_schedule(rate: float, epochs: int, steps_per_epoch: int):
    schedules = keras().optimizers.schedules
    total = epochs * steps_per_epoch
    # Adam's first steps at full rate can wreck freshly initialised BatchNorm
    # statistics; a short warm-up avoids it.
    warmup = min(steps_per_epoch, total // 10)
    if not warmup:
        return schedules.CosineDecay(rate, total)
    return schedules.CosineDecay(rate / 10, total - warmup, warmup_target=rate, warmup_steps=warmup)
