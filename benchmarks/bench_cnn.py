"""Time to 99% test accuracy: digitlab's ``cnn`` against the keras.io convnet.

Trains each model on the official split (all 60,000 training images) and,
after every epoch, measures its accuracy on the 10,000 test images; the
clock stops while it does, so the seconds printed are training time only.
Prints, per model, when it first reached the target accuracy and where it
ended, then one ratio line::

    python benchmarks/bench_cnn.py                   # both, full length (long on 2 cores)
    python benchmarks/bench_cnn.py --models cnn      # only digitlab's model
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
from digitlab.models import build_model
from digitlab.predict import predict_proba

MODELS = ("cnn", "keras-io")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="cnn, keras-io or both")
    parser.add_argument("--epochs", type=int, help="epochs for every model (default: its own)")
    parser.add_argument("--target", type=float, default=0.99, help="accuracy to time (0.99)")
    parser.add_argument("--train-images", type=int, help="use only the first N training images")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="3,000 images, 1 epoch: a smoke test")
    args = parser.parse_args(argv)
    names = [name for name in args.models.split(",") if name]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    if args.quick:
        args.epochs, args.train_images = args.epochs or 1, args.train_images or 3000

    parts = data.split(data.load_dataset(progress=False), "official", seed=args.seed)
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
        results[name] = run(name, x_train, y_train, parts, args)
        report(name, results[name], args.target)
    if len(results) == 2:
        cnn, reference = results["cnn"], results["keras-io"]
        if cnn["target_seconds"] and reference["target_seconds"]:
            ratio = reference["target_seconds"] / cnn["target_seconds"]
            print(f"time to {args.target:.2%}: cnn is {ratio:.1f}x faster than keras-io")
        else:
            print(f"time to {args.target:.2%}: not reached by both, no ratio")
        print(
            f"final accuracy: cnn {cnn['final']:.2%} vs keras-io {reference['final']:.2%}; "
            f"training time: cnn {cnn['seconds']:.0f} s vs keras-io {reference['seconds']:.0f} s"
        )
    return 0


def run(name: str, x_train, y_train, parts, args) -> dict:
    """Train ``name``; return per-epoch (training seconds, test accuracy) and totals."""
    keras = _backend.keras()
    _backend.set_seed(args.seed)
    if name == "cnn":
        overrides = {"epochs": args.epochs} if args.epochs else {}
        config = TrainConfig.for_model("cnn", split="official", seed=args.seed, **overrides)
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
