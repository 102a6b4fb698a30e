"""Every model on the same data: the Keras networks against classic baselines.

Trains each model (default: every registered one but the slow ``svm``) on the
official split — 60,000 training images, scored on the 10,000 test images —
and prints the comparison table (size, training seconds, prediction seconds
per 10,000 images, accuracy, log-loss, ECE), then one line per model, after a
header with the date, CPU, cores and library versions.  Training seconds
exclude XLA compilation, which is shown beside them ("compile").  The run folders and
``compare.csv``/``compare.json``/``compare.png`` go to ``--out``.

    python benchmarks/bench_compare.py [--quick] [--models mlp,rf,...] [--epochs N]

``--quick`` is CI-sized: 6,000 training and 1,000 test images, 2 epochs (the
numbers then only show that everything runs, not how good the models are).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import tempfile
import time
from pathlib import Path

from _machine import cpu_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated (default: every model but svm)")
    parser.add_argument("--epochs", type=int, help="epochs for Keras models (default: their own)")
    parser.add_argument("--quick", action="store_true", help="CI-sized data and epochs")
    parser.add_argument("--split", default="official", choices=("official", "tutorial"))
    parser.add_argument("--out", type=Path, help="output folder (default: a temporary one)")
    args = parser.parse_args()

    from digitlab import data, experiments
    from digitlab.runs import versions

    models = args.models.split(",") if args.models else experiments.default_models()
    dataset = data.load_dataset(progress=False)
    settings = {"split": args.split}
    if args.quick:
        dataset = dataset.head(6000, 1000)
        settings.update(epochs=2, validation_size=1000)
    if args.epochs:
        settings["epochs"] = args.epochs
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-compare-")) / "compare"

    found = versions()
    print(f"date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"cpu: {cpu_name()}, {os.cpu_count()} cores; {found['platform']}")
    print(
        "versions: "
        + ", ".join(
            f"{name} {found[name]}"
            for name in ("python", "digitlab", "keras", "jax", "numpy", "scikit-learn", "skops")
            if name in found
        )
        + f"; Keras backend {found.get('keras_backend')}"
    )
    epochs = settings.get("epochs", "each model's own")
    print(
        f"data: {dataset.x_train.shape[0]:,} training images, split {args.split}, "
        f"epochs: {epochs}; models: {', '.join(models)}\n"
    )
    start = time.perf_counter()
    result = experiments.compare(models, settings=settings, dataset=dataset, out=out)
    total = time.perf_counter() - start
    print()
    print(result.table())
    print()
    for row in result.rows:
        compiling = "–" if row["compile_seconds"] is None else f"{row['compile_seconds']:.1f}"
        print(
            f"{row['model']:<7} accuracy {row['accuracy']:.4f}  loss {row['loss']:.4f}  "
            f"ECE {row['ece']:.4f}  train {row['train_seconds']:7.1f} s  "
            f"compile {compiling:>5} s  predict {row['predict_seconds_per_10k']:6.2f} s/10k  "
            f"size {row['params']:,} {row['size_unit']}  file {row['model_bytes'] / 1e6:.2f} MB"
        )
    print(f"\ntotal {total:.0f} s; results in {result.out}")


if __name__ == "__main__":
    main()
