"""Issue 10's cnn goal, side by side in one run: today's cnn against the cnn
trained by ``--engine torch`` and run by ``--runtime torch``.

Trains ``digitlab train --model cnn --split official`` twice in this process,
one after the other, on the same machine:

* the reference: ``--engine keras`` (Keras on JAX), the cnn's own recipe
  (15 epochs): what the command trained before PyTorch became its default
  engine, and still does where PyTorch is not installed;
* the candidate: ``--engine torch --epochs 30`` (the same network and recipe,
  twice the epochs, computed by PyTorch: bfloat16 on CPUs with AMX), what
  the command trains with no flags where PyTorch is installed.

Each run holds out the same 5,000 training images to validate and calibrate
on and is evaluated once, at the end, on the 10,000 test images.  Then the
batch throughput of each as it is served: ``load_run(REF).predict_proba``
against ``load_run(NEW, runtime="torch").predict_proba`` (batch 1024, best of
``--repeats``, the test images).  Prints both rows and the three goals::

    python benchmarks/bench_engines.py                  # ~25 minutes here
    python benchmarks/bench_engines.py --seed 1 --keep /tmp/engines
    python benchmarks/bench_engines.py --train-images 1500 --test-images 500 \
        --keras-epochs 1 --torch-epochs 1 --repeats 1    # a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np

from _machine import best_seconds, describe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42, help="seed of both runs (42)")
    parser.add_argument("--keras-epochs", type=int, default=15, help="reference epochs (15)")
    parser.add_argument("--torch-epochs", type=int, default=30, help="candidate epochs (30)")
    parser.add_argument("--train-images", type=int, help="only the first N training images")
    parser.add_argument("--test-images", type=int, help="only the first N test images")
    parser.add_argument("--repeats", type=int, default=5, help="throughput: best of N (5)")
    parser.add_argument("--keep", type=Path, help="write the two run folders here")
    args = parser.parse_args(argv)
    if min(args.keras_epochs, args.torch_epochs, args.repeats) < 1:
        parser.error("--keras-epochs, --torch-epochs and --repeats: expected positive integers")
    try:
        import torch  # noqa: F401
    except ImportError:
        print(
            "bench_engines.py: needs PyTorch, which is not installed: "
            "pip install 'digitlab[torch]'",
            file=sys.stderr,
        )
        return 2

    import digitlab
    from digitlab.errors import DigitlabError

    try:
        dataset = digitlab.load_mnist(progress=False)
    except DigitlabError as exc:
        parser.error(str(exc))
    if args.train_images or args.test_images:
        dataset = dataset.head(
            args.train_images or len(dataset.x_train), args.test_images or len(dataset.x_test)
        )
    print(describe("digitlab", "keras", "jax", "torch", "numpy"))
    print(
        f"cnn on the official split: {len(dataset.x_train):,} training images "
        f"({min(5000, len(dataset.x_train) // 5):,} of them held out), "
        f"{len(dataset.x_test):,} test images, seed {args.seed}",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        folder = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        return _compare(args, dataset, folder)


def _compare(args, dataset, folder: Path) -> int:
    import digitlab
    from digitlab.config import TrainConfig

    held_out = min(5000, len(dataset.x_train) // 5)
    images = dataset.x_test.astype(np.float32) / 255
    rows = {}
    for name, engine, epochs, runtime in (
        ("reference", "keras", args.keras_epochs, "native"),
        ("candidate", "torch", args.torch_epochs, "torch"),
    ):
        config = TrainConfig.for_model(
            "cnn",
            split="official",
            engine=engine,
            epochs=epochs,
            seed=args.seed,
            calibration_size=held_out,
        )
        run = digitlab.train(
            config, dataset, run_dir=folder / f"cnn-{engine}", verbose=0, plots_enabled=False
        )
        served = digitlab.load_run(run.path, runtime=runtime)
        seconds = best_seconds(lambda s=served: s.predict_proba(images), args.repeats)
        rows[name] = {
            "label": f"--engine {engine} --epochs {epochs}, --runtime {runtime}",
            "train": run.info.train_seconds,
            "validation": run.history.curves["val_accuracy"][-1],
            "test": run.metrics.accuracy,
            "ece": run.metrics.ece,
            "throughput": len(images) / seconds,
            "precision": getattr(served.classifier, "description", {}).get("precision", "float32"),
        }
        row = rows[name]
        print(
            f"{name}: {row['label']:42s} trained in {row['train']:7.1f} s   validation "
            f"{row['validation']:.4f}   test {row['test']:.4f} (ECE {row['ece']:.4f})   "
            f"{row['throughput']:>9,.0f} images/s ({row['precision']})",
            flush=True,
        )
    old, new = rows["reference"], rows["candidate"]
    time_ratio = new["train"] / old["train"]
    speed_ratio = new["throughput"] / old["throughput"]
    print(
        f"ratio: training time {time_ratio:.2f}x (goal <= 0.5x), throughput "
        f"{speed_ratio:.2f}x (goal >= 5x), test accuracy {new['test']:.4f} (goal >= 0.997): "
        + ", ".join(
            f"{goal} {'met' if ok else 'NOT met'}"
            for goal, ok in (
                ("time", time_ratio <= 0.5),
                ("throughput", speed_ratio >= 5),
                ("accuracy", new["test"] >= 0.997),
            )
        )
    )
    if args.keep:
        print(f"run folders: {folder}/cnn-keras, {folder}/cnn-torch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
