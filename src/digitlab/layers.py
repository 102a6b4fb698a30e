"""digitlab's own Keras layers.

Saved models refer to them as ``digitlab>MaxPool2x2`` and
``digitlab>Augmentation`` (Keras' registered names): importing this module is
what lets ``keras.saving.load_model`` read a run's ``model.keras``.  Both the
model builders and the inference core import it; it imports neither.
"""

from __future__ import annotations

import math

from digitlab._backend import keras
from digitlab.config import elastic_grid


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

    With ``elastic`` (pixels) each image is also bent by a smooth random
    displacement field, as Simard et al. (2003) distort MNIST digits to teach
    a convnet the ways handwriting varies: normal displacements of that
    standard deviation at a coarse grid of points :data:`~digitlab.config.ELASTIC_SPACING`
    pixels apart (:func:`digitlab.config.elastic_grid`), interpolated
    bilinearly to every pixel.

    All three are one resampling: each output pixel's source position is
    computed, then read from its four neighbours (:func:`_bilinear`).  Keras'
    ``RandomRotation``, ``RandomZoom`` and ``RandomTranslation`` would resample
    three times, and they declare themselves not XLA-compilable, which makes
    Keras run the whole training step op by op, 10x slower
    (benchmarks/bench_conv.py: aug-eager vs aug-jit).
    """

    def __init__(self, rotation=10.0, zoom=0.1, shift=0.1, elastic=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.shift, self.seed = rotation, zoom, shift, seed
        self.elastic = float(elastic)
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
            return random.uniform((count, 1, 1), -limit, limit, seed=self.seed_generator)

        angle = uniform(self.rotation * math.pi / 180)
        scale = 1.0 + uniform(self.zoom)
        shift_x, shift_y = uniform(self.shift * width), uniform(self.shift * height)
        # Output pixel (x, y) samples the input at (x, y) rotated and scaled
        # about the centre, then shifted.
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        x = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, width)) - centre_x
        y = ops.reshape(ops.arange(height, dtype="float32"), (1, height, 1)) - centre_y
        cos, sin = scale * ops.cos(angle), scale * ops.sin(angle)
        source_x = cos * x - sin * y + centre_x + shift_x
        source_y = sin * x + cos * y + centre_y + shift_y
        if self.elastic:
            coarse = elastic_grid(height, width)
            field = random.normal((count, *coarse, 2), seed=self.seed_generator) * self.elastic
            field = ops.image.resize(field, (height, width), interpolation="bilinear")
            source_x, source_y = source_x + field[..., 0], source_y + field[..., 1]
        return _bilinear(inputs, source_x, source_y)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rotation": self.rotation,
            "zoom": self.zoom,
            "shift": self.shift,
            "elastic": self.elastic,
            "seed": self.seed,
        }


def _bilinear(images, source_x, source_y):
    """``images`` (n, h, w, c) read at positions ``(source_x, source_y)`` (each
    (n, h, w)), bilinearly, 0 outside the image: four gathers of whole pixels.
    Keras' ``affine_transform`` interpolates over the channel axis too, with
    eight: the same random maps and the same pixels (to 4e-6), 3.5x as long
    alone, 10% more for the whole training step of ``cnn``
    (benchmarks/bench_conv.py: cnn vs cnn-affine)."""
    ops = keras().ops
    count, height, width, channels = ops.shape(images)
    flat = ops.reshape(images, (count, height * width, channels))
    left, top = ops.floor(source_x), ops.floor(source_y)
    out = 0.0
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        column, row = left + dx, top + dy
        weight = (1.0 - ops.abs(source_x - column)) * (1.0 - ops.abs(source_y - row))
        inside = (column >= 0) & (column <= width - 1) & (row >= 0) & (row <= height - 1)
        weight = ops.where(inside, weight, 0.0)
        index = ops.cast(
            ops.clip(row, 0, height - 1) * width + ops.clip(column, 0, width - 1), "int32"
        )
        pixels = ops.take_along_axis(flat, ops.reshape(index, (count, height * width, 1)), axis=1)
        out = out + ops.reshape(weight, (count, height * width, 1)) * pixels
    return ops.reshape(out, (count, height, width, channels))


@keras().saving.register_keras_serializable(package="digitlab")
class Temper(keras().layers.Layer):
    """Probabilities ``(n, k)`` recalibrated by a temperature: ``softmax(log p / T)``.

    An ensemble (:mod:`digitlab.ensemble`) puts each member's own calibration
    inside the one network it saves, before the members' answers are averaged.
    """

    def __init__(self, temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, inputs):
        ops = keras().ops
        logits = ops.log(ops.clip(inputs, 1e-12, 1.0)) / self.temperature
        return ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
