"""Wall time of the everyday command: ``digitlab predict`` in a fresh process.

Median of ``--repeats`` runs each of ``digitlab predict RUN IMAGE`` (a photo
of a real MNIST test digit) and ``digitlab predict RUN --index 0``, for a
tutorial MLP run and a convnet run (cnn-fast, or the kind of the ``--cnn``
run), against the goals of issue 11 (IMAGE <= 1.5 s, --index <= 2 s).  Uses
``--mlp`` / ``--cnn`` run folders, or trains each for one epoch into a
temporary folder (the weights do not change the speed).  Each command runs
once first, untimed, so that the file cache and XLA's compilation cache are
warm as they are for a user's second command.

    python benchmarks/bench_cli.py [--mlp RUN] [--cnn RUN] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"IMAGE": 1.5, "--index 0": 2.0}


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return seconds


def digitlab(*args) -> list[str]:
    return [sys.executable, "-m", "digitlab", *map(str, args)]


def train(model: str, folder: Path, data_dir: str | None) -> Path:
    run = folder / model
    extra = ["--data-dir", data_dir] if data_dir else []
    print(f"training a {model} run for the benchmark…", flush=True)
    wall(
        digitlab(
            "train", "--model", model, "--epochs", "1", "--no-plots", "-q", "--run-dir", run, *extra
        )
    )
    return run


def photo(path: Path, data_dir: str | None) -> Path:
    from PIL import Image

    from digitlab.data import load_dataset

    digit = load_dataset(data_dir).x_test[0]
    page = Image.new("L", (300, 400), 225)
    page.paste(Image.fromarray(255 - digit).resize((220, 220)), (40, 90))
    page.convert("RGB").save(path, quality=90)
    return path


def model_of(run: Path) -> str:
    """The model kind a run folder was trained as (its config.json)."""
    return json.loads((run / "config.json").read_text(encoding="utf-8"))["model"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlp", type=Path, help="a tutorial MLP run (default: train one)")
    parser.add_argument(
        "--cnn", type=Path, help="a convnet run, cnn or cnn-fast (default: train a cnn-fast)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        folder = Path(tmp)
        runs = {
            "mlp": args.mlp or train("mlp", folder, args.data_dir),
            model_of(args.cnn) if args.cnn else "cnn-fast": (
                args.cnn or train("cnn-fast", folder, args.data_dir)
            ),
        }
        image = photo(folder / "seven.jpg", args.data_dir)
        extra = ["--data-dir", args.data_dir] if args.data_dir else []
        print(f"\nmedian wall time of {args.repeats} runs (after one untimed run)")
        failed = []
        for model, run in runs.items():
            for label, command in (
                ("IMAGE", digitlab("predict", run, image)),
                ("--index 0", digitlab("predict", run, "--index", "0", *extra)),
            ):
                wall(command)
                seconds = statistics.median(wall(command) for _ in range(args.repeats))
                goal = GOALS[label]
                verdict = "meets" if seconds <= goal else "MISSES"
                if seconds > goal:
                    failed.append(f"{model} {label}")
                print(
                    f"  {model:<8} digitlab predict RUN {label:<10} {seconds:5.2f} s  "
                    f"(goal <= {goal:.1f} s: {verdict})"
                )
        print("result: every goal met" if not failed else f"result: missed {', '.join(failed)}")


if __name__ == "__main__":
    main()
