"""digitlab's own Keras layers.

Saved models refer to them as ``digitlab>MaxPool2x2`` and
``digitlab>Augmentation`` (Keras' registered names): importing this module is
what lets ``keras.saving.load_model`` read a run's ``model.keras``.  Both the
model builders and the inference core import it; it imports neither.
"""

from __future__ import annotations

import math

from digitlab._backend import keras


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
