"""Where the time goes: seconds per epoch of the tutorial MLP as the number of
training images and the hidden width grow, against the arithmetic floor.

The floor of one epoch is 6 x parameters x images / R, with R this machine's
float32 matrix-multiply rate measured here on the same layer shapes.  Training
runs through digitlab's own ``fit`` path (Keras, JAX, many steps per call)
with SGD and batch 128.  Prints a table and writes ``scaling.png``; a column
``x floor`` near 1 means the arithmetic dominates, a large one means overhead.

    python benchmarks/bench_scaling.py [--epochs 3] [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from _machine import describe, floor_seconds, matmul_rate


def epoch_seconds(dataset, images: int, hidden: int, epochs: int) -> tuple[float, float]:
    """Median seconds per epoch after the first, and the final training accuracy."""

    from digitlab.config import TrainConfig
    from digitlab.training import train

    small = dataset.head(images + 1000)
    config = TrainConfig(hidden=(hidden,), epochs=epochs, validation_size=1000)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run = train(config, small, run_dir=Path(tmp) / "r", verbose=0, plots_enabled=False)
    seconds = run.history["epoch_seconds"][1:] or run.history["epoch_seconds"]
    return float(np.median(seconds)), run.history["accuracy"][-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--quick", action="store_true", help="two sizes, two widths (CI)")
    parser.add_argument("--data-dir", default=os.environ.get("DIGITLAB_DATA_DIR"))
    args = parser.parse_args()

    from digitlab.data import load_dataset

    dataset = load_dataset(args.data_dir)
    sizes = (5_000, 15_000) if args.quick else (5_000, 15_000, 45_000, 59_000)
    widths = (32, 128) if args.quick else (32, 64, 128, 256, 512, 1024)
    width_images = 15_000 if args.quick else 45_000
    rates = {h: matmul_rate(h) for h in {128, *widths}}

    rows = []
    for images in sizes:
        rows.append(("images", images, 128, *epoch_seconds(dataset, images, 128, args.epochs)))
    for hidden in widths:
        rows.append(
            (
                "width",
                width_images,
                hidden,
                *epoch_seconds(dataset, width_images, hidden, args.epochs),
            )
        )
    print(describe("keras", "jax", "numpy"))
    print("| vary | images | hidden | params | s/epoch | floor s | x floor | train acc |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    table = []
    for vary, images, hidden, seconds, acc in rows:
        params = 784 * hidden + hidden + hidden * 10 + 10
        floor = floor_seconds(params, images, rates[hidden])
        table.append((vary, images, hidden, params, seconds, floor))
        print(
            f"| {vary} | {images:,} | {hidden} | {params:,} | {seconds:.3f} | {floor:.3f} | "
            f"{seconds / floor:.2f} | {acc:.4f} |"
        )
    print(
        "matmul rate GFLOP/s by width: "
        + ", ".join(f"{h}: {r:.0f}" for h, r in sorted(rates.items()))
    )
    worst = max(table, key=lambda r: r[4] / r[5])
    print(
        f"ratio: overhead is largest at {worst[1]:,} images, width {worst[2]}: "
        f"{worst[4] / worst[5]:.2f}x the floor"
    )
    _plot(table, args.out / "scaling.png")


def _plot(table, path: Path) -> None:
    from digitlab import plots

    fig, axes = plots.plt.subplots(1, 2, figsize=(10, 4))
    for ax, vary, x_index, label in (
        (axes[0], "images", 1, "training images"),
        (axes[1], "width", 2, "hidden width"),
    ):
        rows = [r for r in table if r[0] == vary]
        xs = [r[x_index] for r in rows]
        ax.plot(xs, [r[4] for r in rows], marker="o", label="digitlab s/epoch")
        ax.plot(xs, [r[5] for r in rows], marker=".", linestyle="--", label="arithmetic floor")
        ax.set_xlabel(label)
        ax.set_ylabel("seconds per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_xscale("log", base=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    plots.save_figure(fig, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
