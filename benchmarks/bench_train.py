"""The tutorial network, trained three ways in one invocation, side by side.

1. the tutorial's code as written on ``tensorflow.keras`` (when a Python with
   TensorFlow is available: this one, or ``--tf-python``);
2. the same code on plain Keras with digitlab's backend (JAX);
3. ``digitlab train`` with the same configuration, twice: with an empty
   compilation cache (the first run on a machine), then with it filled.

Each runs in its own process (Keras fixes its backend per process).  Also
measures this machine's float32 matrix-multiply rate and the arithmetic floor
of one epoch: 6 x parameters x images / rate.  Prints one line per figure and
the ratios; ``--append`` adds the results to benchmarks/RESULTS.md.

    python benchmarks/bench_train.py [--epochs 20] [--tf-python PATH] [--append]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from _machine import describe, floor_seconds, matmul_rate

HERE = Path(__file__).resolve().parent
PARAMS = 101_770
TRAIN_IMAGES = 45_000
VALIDATION_IMAGES = 15_000


def child(command: list[str], env_extra: dict[str, str]) -> dict:
    env = {**os.environ, **env_extra}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stderr[-2000:]}")
    text = out.stdout.strip()
    try:
        return json.loads(text)  # digitlab --json: one (indented) object
    except json.JSONDecodeError:
        return json.loads(text.splitlines()[-1])  # the tutorial child: its last line


def has_tensorflow(python: str) -> bool:
    probe = subprocess.run([python, "-c", "import tensorflow"], capture_output=True, check=False)
    return probe.returncode == 0


def median(values):
    return float(np.median(values)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--tf-python",
        default=sys.executable,
        help="a Python with TensorFlow installed (default: this one)",
    )
    parser.add_argument("--data-dir", default=os.environ.get("DIGITLAB_DATA_DIR"))
    parser.add_argument("--append", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args()

    from digitlab.data import load_dataset

    dataset = load_dataset(args.data_dir)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "train.npz"
        np.savez(npz, x=dataset.x_train, y=dataset.y_train)
        tutorial = [str(HERE / "_tutorial_fit.py"), str(npz), str(args.epochs)]
        if has_tensorflow(args.tf_python):
            results["tutorial on tensorflow.keras"] = child(
                [args.tf_python, *tutorial],
                {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"},
            )
        else:
            print(f"# no TensorFlow in {args.tf_python}: skipping the tutorial's own stack")
        results["tutorial on keras/jax"] = child(
            [sys.executable, *tutorial], {"KERAS_BACKEND": "jax"}
        )
        # digitlab keeps XLA's compiled programs between runs: time a first
        # run with an empty cache and a second one that finds it filled.
        cache = Path(tmp) / "xla-cache"
        for name in ("digitlab train (first run)", "digitlab train"):
            run_dir = Path(tmp) / name.replace(" ", "-")
            run = child(
                [
                    sys.executable,
                    "-m",
                    "digitlab",
                    "train",
                    "--epochs",
                    str(args.epochs),
                    "--json",
                    "--quiet",
                    "--no-plots",
                    "--run-dir",
                    str(run_dir),
                    *(["--data-dir", args.data_dir] if args.data_dir else []),
                ],
                {"DIGITLAB_COMPILATION_CACHE": str(cache)},
            )
            history = json.loads((run_dir / "history.json").read_text())
            results[name] = {
                "fit_seconds": run["train_seconds"],
                "epoch_seconds": history["epoch_seconds"],
                "accuracy": run["eval"]["accuracy"],
            }

    rate = matmul_rate(128)
    floor = floor_seconds(PARAMS, TRAIN_IMAGES, rate)
    # Each epoch also predicts the 15,000 validation images: 2 x params each.
    floor_with_validation = floor + floor_seconds(PARAMS, VALIDATION_IMAGES, rate) / 3
    lines = [
        describe("keras", "jax", "jaxlib", "numpy"),
        f"matmul rate (784x128 layer, float32, NumPy): {rate:.0f} GFLOP/s -> "
        f"arithmetic floor {floor:.3f} s/epoch "
        f"({floor_with_validation:.3f} s with the validation pass)",
    ]
    for name, r in results.items():
        later = r["epoch_seconds"][1:] or r["epoch_seconds"]
        r["per_epoch"] = median(later)
        lines.append(
            f"{name}: {r['per_epoch']:.3f} s/epoch after the first "
            f"(first {r['epoch_seconds'][0]:.2f} s), fit {r['fit_seconds']:.2f} s for "
            f"{args.epochs} epochs, validation accuracy {r['accuracy']:.4f}"
        )
    ours = results["digitlab train"]
    for name, r in results.items():
        if not name.startswith("digitlab train"):
            lines.append(
                f"ratio: digitlab is {r['per_epoch'] / ours['per_epoch']:.2f}x faster per epoch "
                f"and {r['fit_seconds'] / ours['fit_seconds']:.2f}x faster in total than {name}"
            )
    lines.append(
        f"ratio: digitlab epoch = {ours['per_epoch'] / floor:.2f}x the arithmetic floor "
        f"({ours['per_epoch'] / floor_with_validation:.2f}x the floor with validation)"
    )
    print("\n".join(lines))
    if args.append:
        _append(lines, args)


def _append(lines: list[str], args) -> None:
    import datetime

    stamp = datetime.date.today().isoformat()
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as f:
        f.write(f"\n### bench_train.py --epochs {args.epochs} ({stamp})\n\n```\n")
        f.write("\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
