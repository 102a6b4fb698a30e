"""Time to 99% test accuracy: digitlab's convnets against the keras.io convnet.

Trains each model on the official split (all 60,000 training images) and,
after every epoch, measures its accuracy on the 10,000 test images; the
clock stops while it does, so the seconds printed are training time only.
Prints, per model, when it first reached the target accuracy and where it
ended, then one ratio line per digitlab model; with several ``--seed`` values,
digitlab's models run once per seed and the median and worst are reported::

    python benchmarks/bench_cnn.py                   # cnn and keras-io, full length (long)
    python benchmarks/bench_cnn.py --models cnn-fast,keras-io --seed 42,1,2
    python benchmarks/bench_cnn.py --quick           # CI: 3,000 images, 1 epoch each

The reference is https://keras.io/examples/vision/mnist_convnet/ as published:
Conv2D(32, 3) → MaxPooling2D → Conv2D(64, 3) → MaxPooling2D → Dropout(0.5) →
Dense(10), Adam, batch 128, 15 epochs (34,826 parameters).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

from digitlab import _backend, data
from digitlab.config import TrainConfig
from digitlab.inference import predict_proba
from digitlab.models import build_model

MODELS = ("cnn", "cnn-fast", "keras-io")
DEFAULT_MODELS = ("cnn", "keras-io")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=",".join(DEFAULT_MODELS), help=f"any of {', '.join(MODELS)}"
    )
    parser.add_argument("--epochs", type=int, help="epochs for every model (default: its own)")
    parser.add_argument("--target", type=float, default=0.99, help="accuracy to time (0.99)")
    parser.add_argument("--train-images", type=int, help="use only the first N training images")
    parser.add_argument(
        "--seed", default="42", help="seed, or comma-separated seeds for digitlab's models"
    )
    parser.add_argument("--quick", action="store_true", help="3,000 images, 1 epoch: a smoke test")
    args = parser.parse_args(argv)
    names = [name for name in args.models.split(",") if name]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    if args.quick:
        args.epochs, args.train_images = args.epochs or 1, args.train_images or 3000
    try:
        seeds = [int(seed) for seed in args.seed.split(",") if seed]
    except ValueError:
        parser.error(f"--seed: expected integers separated by commas, got {args.seed!r}")

    parts = data.split(data.load_dataset(progress=False), "official", seed=seeds[0])
    x_train, y_train = parts.x_train, parts.y_train
    if args.train_images:
        x_train, y_train = x_train[: args.train_images], y_train[: args.train_images]
    print(
        f"{len(x_train):,} training images, {len(parts.x_eval):,} test images, "
        f"target {args.target:.2%}, backend {_backend.keras().backend.backend()}",
        flush=True,
    )

    results = {}
    for name in names:
        runs = []
        for seed in seeds if name != "keras-io" else seeds[:1]:
            runs.append(run(name, x_train, y_train, parts, args, seed))
            report(f"{name} (seed {seed})" if len(seeds) > 1 else name, runs[-1], args.target)
        results[name] = summarise(name, runs, args.target)
    reference = results.get("keras-io")
    for name, ours in results.items():
        if name == "keras-io" or reference is None:
            continue
        if ours["target_seconds"] and reference["target_seconds"]:
            ratio = reference["target_seconds"] / ours["target_seconds"]
            print(f"time to {args.target:.2%}: {name} is {ratio:.1f}x faster than keras-io")
        else:
            print(f"time to {args.target:.2%}: not reached by {name} and keras-io, no ratio")
        print(
            f"final accuracy: {name} {ours['final']:.2%} vs keras-io {reference['final']:.2%}; "
            f"training time: {name} {ours['seconds']:.0f} s vs keras-io "
            f"{reference['seconds']:.0f} s"
        )
    return 0


def summarise(name: str, runs: list[dict], target: float) -> dict:
    """One run as is; several: the median run (by time to target), and a line
    with the median and the worst."""
    if len(runs) == 1:
        return runs[0]
    never = float("inf")
    ordered = sorted(runs, key=lambda r: r["target_seconds"] or never)
    median = ordered[len(ordered) // 2]
    worst = ordered[-1]
    finals = ", ".join(f"{r['final']:.2%}" for r in runs)
    print(
        f"{name}: {len(runs)} seeds, final test accuracy {finals}; time to {target:.2%}: "
        f"median {_seconds(median)}, worst {_seconds(worst)}",
        flush=True,
    )
    return median


def _seconds(result: dict) -> str:
    seconds = result["target_seconds"]
    return "not reached" if seconds is None else f"{seconds:.1f} s"


def run(name: str, x_train, y_train, parts, args, seed: int) -> dict:
    """Train ``name``; return per-epoch (training seconds, test accuracy) and totals."""
    keras = _backend.keras()
    _backend.set_seed(seed)
    if name != "keras-io":
        overrides = {"epochs": args.epochs} if args.epochs else {}
        config = TrainConfig.for_model(name, split="official", seed=seed, **overrides)
        steps = -(-len(x_train) // config.batch_size)
        model = build_model(config, x_train.shape[1:], 10, steps_per_epoch=steps)
        epochs, batch_size = config.epochs, config.batch_size
    else:
        model = keras_io_convnet(keras)
        epochs, batch_size = args.epochs or 15, 128
    curve = []

    class TestEveryEpoch(keras.callbacks.Callback):
        """Test accuracy after each epoch, with its time kept out of the clock."""

        def on_train_begin(self, logs=None):
            self.training_seconds, self.start = 0.0, time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.training_seconds += time.perf_counter() - self.start
            probabilities = predict_proba(self.model, parts.x_eval)
            accuracy = float((probabilities.argmax(axis=1) == parts.labels_eval).mean())
            curve.append((self.training_seconds, accuracy))
            print(
                f"  {name} epoch {epoch + 1}: {accuracy:.2%} after {self.training_seconds:.1f} s",
                flush=True,
            )
            self.start = time.perf_counter()

    model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
        callbacks=[TestEveryEpoch()],
    )
    reached = next(((s, e) for e, (s, a) in enumerate(curve, 1) if a >= args.target), None)
    return {
        "params": int(model.count_params()),
        "epochs": epochs,
        "curve": curve,
        "final": curve[-1][1],
        "seconds": curve[-1][0],
        "target_seconds": reached[0] if reached else None,
        "target_epoch": reached[1] if reached else None,
    }


def keras_io_convnet(keras):
    """https://keras.io/examples/vision/mnist_convnet/, compiled as there."""
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            layers.Reshape((28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def report(name: str, result: dict, target: float) -> None:
    if result["target_seconds"] is None:
        reached = f"did not reach {target:.2%}"
    else:
        reached = (
            f"reached {target:.2%} after {result['target_seconds']:.1f} s "
            f"(epoch {result['target_epoch']})"
        )
    print(
        f"{name:<8} {result['params']:>8,} params: {reached}; "
        f"final {result['final']:.2%} after {result['epochs']} epochs, "
        f"{result['seconds']:.1f} s of training",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
