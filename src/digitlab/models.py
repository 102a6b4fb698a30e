"""Model builders, one small function per architecture, in one registry.

Every builder takes the resolved :class:`~digitlab.config.TrainConfig`, the
input image shape (e.g. ``(28, 28)``) and the number of classes, and returns an
uncompiled ``keras.Model`` that maps float32 images in [0, 1] of that shape to
softmax probabilities.  :func:`build_model` looks the builder up and compiles
the model with the config's optimizer and categorical cross-entropy.
"""

from __future__ import annotations

import inspect
import math
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


@register("cnn")
def build_cnn(config: TrainConfig, input_shape: tuple[int, ...], num_classes: int):
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
    (:data:`~digitlab.config.MODEL_DEFAULTS`) train it with Adam, a cosine
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


@register("cnn-fast")
def build_cnn_fast(config: TrainConfig, input_shape: tuple[int, ...], num_classes: int):
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
        layers.append(Augmentation())
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


@keras().saving.register_keras_serializable(package="digitlab")
class MaxPool2x2(keras().layers.Layer):
    """2x2 max-pooling with stride 2, like ``MaxPooling2D(2)`` (an odd last
    row or column is dropped), on channels-last images ``(n, h, w, c)`` →
    ``(n, h // 2, w // 2, c)``.

    Written as the maximum of four strided slices so that its gradient is
    element-wise: ``MaxPooling2D``'s gradient (XLA's select-and-scatter) is
    about 30x slower on CPU and was half the training time of the keras.io
    convnet (benchmarks/bench_conv.py).
    """

    def call(self, inputs):
        ops = keras().ops
        h, w = inputs.shape[1] // 2 * 2, inputs.shape[2] // 2 * 2
        top = ops.maximum(inputs[:, 0:h:2, 0:w:2, :], inputs[:, 0:h:2, 1:w:2, :])
        bottom = ops.maximum(inputs[:, 1:h:2, 0:w:2, :], inputs[:, 1:h:2, 1:w:2, :])
        return ops.maximum(top, bottom)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else h // 2, None if w is None else w // 2, c)


@keras().saving.register_keras_serializable(package="digitlab")
class Augmentation(keras().layers.Layer):
    """Random rotation (±``rotation`` degrees), zoom (±``zoom``, e.g. 0.1:
    90-110 %) and shift (±``shift`` of the height and width) of channels-last
    images ``(n, h, w, c)``, one random affine map per image, bilinear, black
    outside the image; in training only (at inference it returns its input).

    One :func:`keras.ops.image.affine_transform` does all three.  Keras'
    ``RandomRotation``, ``RandomZoom`` and ``RandomTranslation`` would resample
    three times, and they declare themselves not XLA-compilable, which makes
    Keras run the whole training step op by op, 10x slower
    (benchmarks/bench_conv.py: aug-eager vs aug-jit).
    """

    def __init__(self, rotation=10.0, zoom=0.1, shift=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.shift, self.seed = rotation, zoom, shift, seed
        self.seed_generator = keras().random.SeedGenerator(seed)
        # As Keras' own image layers do: TensorFlow's image transform op does
        # not compile with XLA.
        self.supports_jit = keras().backend.backend() != "tensorflow"

    def call(self, inputs, training=None):
        if not training:
            return inputs
        k = keras()
        ops, random = k.ops, k.random
        count, height, width = ops.shape(inputs)[0], inputs.shape[1], inputs.shape[2]

        def uniform(limit):
            return random.uniform((count,), -limit, limit, seed=self.seed_generator)

        angle = uniform(self.rotation * math.pi / 180)
        scale = 1.0 + uniform(self.zoom)
        shift_x, shift_y = uniform(self.shift * width), uniform(self.shift * height)
        # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2):
        # a rotation and scaling about the centre, then the shift.
        a0, a1 = scale * ops.cos(angle), -scale * ops.sin(angle)
        b0, b1 = scale * ops.sin(angle), scale * ops.cos(angle)
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        a2 = centre_x - a0 * centre_x - a1 * centre_y + shift_x
        b2 = centre_y - b0 * centre_x - b1 * centre_y + shift_y
        zeros = ops.zeros_like(angle)
        transforms = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return k.ops.image.affine_transform(
            inputs, transforms, interpolation="bilinear", fill_mode="constant"
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rotation": self.rotation,
            "zoom": self.zoom,
            "shift": self.shift,
            "seed": self.seed,
        }


def build_model(
    config: TrainConfig,
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
        builder = MODELS[config.model]
    except KeyError:
        raise ConfigError(
            f"model: expected one of {', '.join(sorted(MODELS))}. Received: model={config.model!r}"
        ) from None
    model = builder(config, tuple(input_shape), num_classes)
    if config.augment and not any(isinstance(layer, Augmentation) for layer in model.layers):
        raise ConfigError(
            f"augment: expected a model that augments its images (cnn, cnn-fast). "
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


def make_optimizer(config: TrainConfig, *, steps_per_epoch: int | None = None):
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
