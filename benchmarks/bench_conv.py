"""Why are convnets slow on Keras/JAX CPU, and what is faster?

Times one training step (forward + backward + Adam update, through
``model.fit``) of the keras.io "simple MNIST convnet" — Conv2D(32, 3) →
MaxPooling2D → Conv2D(64, 3) → MaxPooling2D → Dropout(0.5) → Dense(10),
34,826 parameters — written several ways, on random 28x28x1 images:

* ``conv-nhwc``   as on keras.io (channels_last): the baseline;
* ``conv-nchw``   the same with ``data_format="channels_first"``;
* ``patches``     each conv as ``keras.ops.image.extract_patches`` + ``Dense``;
* ``im2col``      each conv as nine shifted slices concatenated + ``Dense``
                  (one big matrix multiply per convolution);
* ``conv-bf16``   the baseline under the ``mixed_bfloat16`` policy;
* ``slicepool``   the baseline with digitlab's ``MaxPool2x2`` (max of four
                  strided slices) instead of ``MaxPooling2D``: same values;
* ``avgpool``     ``AveragePooling2D`` instead (a different function);
* ``strided``     stride-2 convs instead of conv + pool (a different function);
* ``aug-eager``   ``slicepool`` behind Keras' RandomRotation/Zoom/Translation
                  layers, which make Keras train without XLA compilation;
* ``aug-jit``     the same behind digitlab's ``Augmentation`` (those layers,
                  declared compilable, one resampling with four gathers);
* ``aug-affine``  the same behind the ``Augmentation`` of before 2026-12-01,
                  which resampled with ``keras.ops.image.affine_transform``
                  (eight gathers: it interpolates over the channel axis too);
* ``cnn``         digitlab's ``cnn`` network itself (augmentation included);
* ``cnn-affine``  the same with the ``aug-affine`` augmentation;
* ``mlp``         the tutorial's Dense(128) network, to check that an
                  ``XLA_FLAGS`` setting does not slow the default model down.

Prints one line per variant — wall and CPU (all threads) ms per step and the
implied seconds per epoch of 60,000 images — and a ratio line against
``conv-nhwc``.  On a shared machine the CPU figure is the steadier one.
``--xla-flags`` reruns the variants in a fresh process per ``XLA_FLAGS``
setting (XLA reads it at start-up); ``--pieces`` (JAX only) times single
operations: each conv's forward, input-gradient and weight-gradient with
"same" and "valid" padding, and max-pooling's gradient both ways::

    python benchmarks/bench_conv.py
    python benchmarks/bench_conv.py --variants conv-nhwc,slicepool --batch-sizes 128,512
    python benchmarks/bench_conv.py --xla-flags --variants conv-nhwc,slicepool,mlp
    python benchmarks/bench_conv.py --pieces
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # after choosing the backend
import numpy as np

from digitlab.layers import Augmentation, MaxPool2x2

TRAIN_IMAGES = 60_000
VARIANTS = (
    "conv-nhwc",
    "conv-nchw",
    "patches",
    "im2col",
    "conv-bf16",
    "slicepool",
    "avgpool",
    "strided",
    "aug-eager",
    "aug-jit",
    "aug-affine",
    "cnn",
    "cnn-affine",
    "mlp",
)
# XLA:CPU flags this jaxlib knows (listed by `strings libjax_common.so`); each
# is tried alone against the default.
FLAG_SETS = (
    "",
    "--xla_cpu_use_thunk_runtime=false",
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_use_xnnpack=false",
    "--xla_cpu_enable_fast_math=true",
    "--xla_cpu_prefer_vector_width=512",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--batch-sizes", default="128", help="comma-separated (default: 128)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs (median)")
    parser.add_argument("--xla-flags", action="store_true", help="sweep XLA_FLAGS settings")
    parser.add_argument("--pieces", action="store_true", help="time single JAX operations")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.pieces:
        return time_pieces()
    if args.xla_flags:
        return sweep_flags(args)

    rows = []
    for batch_size in batch_sizes:
        for variant in variants:
            ms, cpu_ms = time_step(variant, batch_size, steps=args.steps, repeats=args.repeats)
            row = {
                "variant": variant,
                "batch_size": batch_size,
                "ms_per_step": ms,
                "cpu_ms_per_step": cpu_ms,
                "s_per_epoch": ms / 1000 * math.ceil(TRAIN_IMAGES / batch_size),
                "cpu_s_per_epoch": cpu_ms / 1000 * math.ceil(TRAIN_IMAGES / batch_size),
                "xla_flags": os.environ.get("XLA_FLAGS", ""),
            }
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(
                    f"{variant:<10} batch {batch_size:>4}: {ms:7.1f} ms/step "
                    f"({cpu_ms:6.1f} CPU ms), {row['s_per_epoch']:6.1f} s/epoch "
                    f"({row['cpu_s_per_epoch']:6.1f} CPU s) of 60,000 images",
                    flush=True,
                )
    if not args.json:
        print_ratios(rows)
    return 0


def print_ratios(rows: list[dict]) -> None:
    """Each variant's s/epoch as a speed-up over conv-nhwc at batch 128: wall, (CPU)."""
    base = next((r for r in rows if r["variant"] == "conv-nhwc" and r["batch_size"] == 128), None)
    if base is None:
        return
    parts = [
        f"{r['variant']}@{r['batch_size']} {base['s_per_epoch'] / r['s_per_epoch']:.2f}x "
        f"({base['cpu_s_per_epoch'] / r['cpu_s_per_epoch']:.2f}x)"
        for r in rows
        if r is not base and r["variant"] != "mlp"
    ]
    if parts:
        print("speed-up vs conv-nhwc@128 per epoch, wall (CPU): " + ", ".join(parts))


def sweep_flags(args) -> int:
    """Rerun this script in a fresh process per XLA_FLAGS setting."""
    print(f"{'XLA_FLAGS':<36} {'variant':<10} {'batch':>5} {'ms/step':>8} {'CPU ms':>8}")
    baseline = {}
    for flags in FLAG_SETS:
        env = dict(os.environ, XLA_FLAGS=flags)
        command = [
            sys.executable,
            __file__,
            "--json",
            f"--variants={args.variants}",
            f"--batch-sizes={args.batch_sizes}",
            f"--steps={args.steps}",
            f"--repeats={args.repeats}",
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"{flags or '(none)':<36} failed: {last}")
            continue
        for line in done.stdout.splitlines():
            if not line.startswith("{"):
                continue
            row = json.loads(line)
            key = (row["variant"], row["batch_size"])
            baseline.setdefault(key, row["cpu_ms_per_step"])
            ratio = baseline[key] / row["cpu_ms_per_step"]
            print(
                f"{flags or '(none)':<36} {row['variant']:<10} {row['batch_size']:>5} "
                f"{row['ms_per_step']:8.1f} {row['cpu_ms_per_step']:8.1f}  "
                f"({ratio:.2f}x CPU vs no flags)",
                flush=True,
            )
    return 0


def time_step(variant: str, batch_size: int, *, steps: int, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) milliseconds per training step of ``variant`` through
    ``model.fit``; the first epoch, which compiles, is not timed."""
    keras.config.set_dtype_policy("mixed_bfloat16" if variant == "conv-bf16" else "float32")
    keras.utils.set_random_seed(0)
    model = build(variant)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((steps * batch_size, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, steps * batch_size)]
    wall, cpu = [], []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            wall.append(time.perf_counter() - self.start[0])
            cpu.append(time.process_time() - self.start[1])

    model.fit(x, y, batch_size=batch_size, epochs=repeats + 1, verbose=0, callbacks=[Timer()])
    keras.config.set_dtype_policy("float32")
    return (
        statistics.median(wall[1:]) / steps * 1000,
        statistics.median(cpu[1:]) / steps * 1000,
    )


def build(variant: str):
    """The keras.io convnet (or the tutorial MLP) written as ``variant``."""
    layers = keras.layers
    if variant in ("cnn", "cnn-affine"):
        return digitlab_cnn(affine=variant == "cnn-affine")
    if variant == "mlp":
        return keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                layers.Flatten(),
                layers.Dense(128, activation="relu"),
                layers.Dense(10, activation="softmax"),
            ]
        )
    conv_pool = {
        "conv-nhwc": lambda f: [layers.Conv2D(f, 3, activation="relu"), layers.MaxPooling2D(2)],
        "conv-bf16": lambda f: [layers.Conv2D(f, 3, activation="relu"), layers.MaxPooling2D(2)],
        "conv-nchw": lambda f: [
            layers.Conv2D(f, 3, activation="relu", data_format="channels_first"),
            layers.MaxPooling2D(2, data_format="channels_first"),
        ],
        "patches": lambda f: [
            ExtractPatches3x3(),
            layers.Dense(f, activation="relu"),
            layers.MaxPooling2D(2),
        ],
        "im2col": lambda f: [
            SlicePatches3x3(),
            layers.Dense(f, activation="relu"),
            layers.MaxPooling2D(2),
        ],
        "slicepool": lambda f: [layers.Conv2D(f, 3, activation="relu"), MaxPool2x2()],
        "aug-eager": lambda f: [layers.Conv2D(f, 3, activation="relu"), MaxPool2x2()],
        "aug-jit": lambda f: [layers.Conv2D(f, 3, activation="relu"), MaxPool2x2()],
        "aug-affine": lambda f: [layers.Conv2D(f, 3, activation="relu"), MaxPool2x2()],
        "avgpool": lambda f: [
            layers.Conv2D(f, 3, activation="relu"),
            layers.AveragePooling2D(2),
        ],
        "strided": lambda f: [layers.Conv2D(f, 3, strides=2, activation="relu")],
    }[variant]
    front = []
    if variant == "conv-nchw":
        front = [layers.Permute((3, 1, 2))]
    elif variant == "aug-eager":
        front = [
            layers.RandomRotation(10 / 360, fill_mode="constant"),
            layers.RandomZoom(0.1, fill_mode="constant"),
            layers.RandomTranslation(0.1, 0.1, fill_mode="constant"),
        ]
    elif variant == "aug-jit":
        front = [Augmentation()]
    elif variant == "aug-affine":
        front = [AffineAugmentation()]
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            *front,
            *conv_pool(32),
            *conv_pool(64),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax", dtype="float32"),
        ]
    )


def digitlab_cnn(*, affine: bool):
    """digitlab's ``cnn`` network as ``digitlab train --model cnn`` builds it,
    its augmentation replaced by :class:`AffineAugmentation` if ``affine``."""
    from digitlab.config import TrainConfig
    from digitlab.models.networks import BUILDERS

    model = BUILDERS["cnn"](TrainConfig.for_model("cnn"), (28, 28, 1), 10)
    if not affine:
        return model
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            *(
                AffineAugmentation() if isinstance(layer, Augmentation) else layer
                for layer in model.layers
            ),
        ]
    )


class AffineAugmentation(Augmentation):
    """digitlab's ``Augmentation`` as it was before 2026-12-01: the same random
    rotation, zoom and shift, resampled by ``keras.ops.image.affine_transform``."""

    def call(self, inputs, training=None):
        if not training:
            return inputs
        ops, random = keras.ops, keras.random
        count, height, width = ops.shape(inputs)[0], inputs.shape[1], inputs.shape[2]

        def uniform(limit):
            return random.uniform((count,), -limit, limit, seed=self.seed_generator)

        angle = uniform(self.rotation * math.pi / 180)
        scale = 1.0 + uniform(self.zoom)
        shift_x, shift_y = uniform(self.shift * width), uniform(self.shift * height)
        a0, a1 = scale * ops.cos(angle), -scale * ops.sin(angle)
        b0, b1 = scale * ops.sin(angle), scale * ops.cos(angle)
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        a2 = centre_x - a0 * centre_x - a1 * centre_y + shift_x
        b2 = centre_y - b0 * centre_x - b1 * centre_y + shift_y
        zeros = ops.zeros_like(angle)
        transforms = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return ops.image.affine_transform(
            inputs, transforms, interpolation="bilinear", fill_mode="constant"
        )


class ExtractPatches3x3(keras.layers.Layer):
    """3x3 'valid' patches with ``keras.ops.image.extract_patches`` (which
    Keras implements as a convolution with an identity kernel)."""

    def call(self, x):
        return keras.ops.image.extract_patches(x, 3, strides=1, padding="valid")


class SlicePatches3x3(keras.layers.Layer):
    """3x3 'valid' patches as nine shifted slices concatenated on the channel
    axis: (n, h, w, c) → (n, h-2, w-2, 9c), in Conv2D's kernel order."""

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        views = [x[:, i : h - 2 + i, j : w - 2 + j, :] for i in range(3) for j in range(3)]
        return keras.ops.concatenate(views, axis=-1)


def time_pieces(batch_size: int = 128, repeats: int = 10) -> int:
    """CPU ms of single XLA operations at batch 128 (JAX backend only)."""
    if keras.backend.backend() != "jax":
        print("--pieces times raw JAX operations: run with KERAS_BACKEND=jax")
        return 2
    import jax
    from jax import lax

    def cpu_ms(function, *arguments):
        jax.block_until_ready(function(*arguments))
        start = time.process_time()
        for _ in range(repeats):
            result = function(*arguments)
        jax.block_until_ready(result)
        return (time.process_time() - start) / repeats * 1000

    key = jax.random.PRNGKey(0)
    print("convolution (NHWC), CPU ms:      forward  d/input  d/kernel   GFLOP/s fwd")
    cases = [
        (28, 1, 32, "SAME"),
        (28, 1, 32, "VALID"),
        (28, 32, 32, "SAME"),
        (28, 32, 32, "VALID"),
        (14, 32, 64, "SAME"),
        (13, 32, 64, "VALID"),
        (7, 64, 128, "SAME"),
    ]
    for size, channels_in, channels_out, padding in cases:
        x = jax.random.normal(key, (batch_size, size, size, channels_in))
        w = jax.random.normal(key, (3, 3, channels_in, channels_out)) * 0.05

        def conv(x, w, padding=padding):
            return lax.conv_general_dilated(
                x, w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
            )

        out = jax.eval_shape(conv, x, w).shape
        flops = 2 * math.prod(out) * 9 * channels_in
        forward = cpu_ms(jax.jit(conv), x, w)
        d_input = cpu_ms(jax.jit(jax.grad(lambda x, w: conv(x, w).sum(), 0)), x, w)
        d_kernel = cpu_ms(jax.jit(jax.grad(lambda x, w: conv(x, w).sum(), 1)), x, w)
        print(
            f"  {size}x{size}x{channels_in:<3} -> {out[1]}x{out[2]}x{channels_out:<3} {padding:<5}"
            f" {forward:8.1f} {d_input:8.1f} {d_kernel:9.1f}   {flops / forward / 1e6:8.1f}"
        )

    y = jax.random.normal(key, (batch_size, 26, 26, 32))

    def reduce_window_max(y):
        return lax.reduce_window(y, -np.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def slices_max(y):
        return MaxPool2x2()(y)

    print("2x2 max-pool of 128x26x26x32, forward + gradient, CPU ms:")
    pools = (("reduce_window (MaxPooling2D)", reduce_window_max), ("MaxPool2x2", slices_max))
    for name, pool in pools:
        grad = jax.jit(jax.grad(lambda y, pool=pool: (pool(y) ** 2).sum()))
        print(f"  {name:<30} {cpu_ms(grad, y):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
