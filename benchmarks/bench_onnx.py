"""The native runtime (Keras on JAX, as ``digitlab serve`` loads it) against
the ONNX export on onnxruntime, side by side, for the MLP and a CNN.

For each (model, runtime), in a fresh process: start-up seconds (process start
to a loaded, warmed-up ``Predictor``), peak memory then (VmHWM), single-image
latency (median of ``predict_one``), batch throughput (the 10,000 test images,
batches of 1,000); and the wall time of the command ``digitlab predict RUN
IMAGE [--runtime onnx]`` (the native command computes digitlab's Keras networks
with NumPy, see README).

    python benchmarks/bench_onnx.py [--mlp RUN] [--cnn RUN] [--repeats 3]

Defaults: the stored runs tests/fixtures/mlp-0.1.0 (the tutorial MLP) and
tests/fixtures/cnn-fast-0.1.0 (cnn-fast: the quick CNN), copied to a temporary
folder and exported there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import numpy as np
from digitlab.inference import Predictor
from digitlab.runs import load_run
from digitlab.data import load_dataset
run_dir, runtime = sys.argv[1], sys.argv[2]
predictor = Predictor(load_run(run_dir, runtime=runtime))
with open("/proc/self/status") as status:  # peak memory so far: loaded and warm
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
heavy = sorted(m for m in ("jax", "keras", "sklearn") if m in sys.modules)
print("READY", flush=True)
x = load_dataset().x_test.astype(np.float32) / 255.0
one = x[0]
for _ in range(20):
    predictor.predict_one(one)
times = []
for i in range(300):
    start = time.perf_counter()
    predictor.predict_one(x[i])
    times.append(time.perf_counter() - start)
predictor.predict_proba(x[:1000], batch_size=1000)
start = time.perf_counter()
predictor.predict_proba(x, batch_size=1000)
batch = time.perf_counter() - start
print(json.dumps({
    "latency_ms": 1000 * float(np.median(times)),
    "images_per_s": len(x) / batch,
    "max_rss_mb": peak,
    "heavy_modules": heavy,
    "backend": predictor.backend,
}), flush=True)
"""


def measure_process(run_dir: Path, runtime: str) -> dict:
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(run_dir), runtime],
        stdout=subprocess.PIPE,
        text=True,
    )
    ready = child.stdout.readline()
    startup = time.perf_counter() - start
    if not ready.startswith("READY"):
        raise SystemExit(f"{runtime}: the child did not start ({ready!r})")
    result = json.loads(child.stdout.readline())
    child.wait(timeout=600)
    return {"startup_s": startup, **result}


def predict_command(run_dir: Path, image: Path, runtime: str) -> float:
    command = [sys.executable, "-m", "digitlab", "predict", str(run_dir), str(image), "--json"]
    if runtime == "onnx":
        command += ["--runtime", "onnx"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlp", type=Path, default=ROOT / "tests/fixtures/mlp-0.1.0")
    parser.add_argument("--cnn", type=Path, default=ROOT / "tests/fixtures/cnn-fast-0.1.0")
    parser.add_argument("--repeats", type=int, default=3, help="medians of this many processes")
    args = parser.parse_args(argv)

    from digitlab.data import load_dataset
    from digitlab.export import export_onnx
    from digitlab.inference.reading import png_bytes
    from digitlab.runs import load_run

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as scratch:
        scratch = Path(scratch)
        image = scratch / "digit.png"
        digit = load_dataset().x_test[0]
        image.write_bytes(png_bytes(1.0 - digit / 255.0))  # dark ink on white, 28x28
        for label, source in (("mlp", args.mlp), ("cnn", args.cnn)):
            run_dir = scratch / source.name
            shutil.copytree(source, run_dir)
            run = load_run(run_dir)
            summary = export_onnx(run)
            onnx_bytes = (run_dir / "model.onnx").stat().st_size
            model_file = next(
                p
                for p in run_dir.iterdir()
                if p.name.startswith("model.") and p.suffix in (".keras", ".skops")
            )
            for runtime in ("native", "onnx"):
                runs = [measure_process(run_dir, runtime) for _ in range(args.repeats)]
                commands = [predict_command(run_dir, image, runtime) for _ in range(args.repeats)]
                row = {
                    key: statistics.median(r[key] for r in runs)
                    for key in ("startup_s", "latency_ms", "images_per_s", "max_rss_mb")
                }
                row.update(
                    model=f"{label} ({run.config.model})",
                    runtime=f"{runtime} ({runs[0]['backend']})",
                    predict_s=statistics.median(commands),
                    file_bytes=onnx_bytes if runtime == "onnx" else model_file.stat().st_size,
                    export_s=summary["export_seconds"] if runtime == "onnx" else None,
                    heavy=runs[0]["heavy_modules"],
                )
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)

    header = (
        "model",
        "runtime",
        "start-up s",
        "peak RSS MB (loaded)",
        "predict IMAGE s",
        "1 image ms",
        "images/s (10k)",
        "model file",
        "jax/keras/sklearn loaded",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(
            f"| {r['model']} | {r['runtime']} | {r['startup_s']:.2f} | {r['max_rss_mb']:.0f} | "
            f"{r['predict_s']:.2f} | {r['latency_ms']:.3f} | {r['images_per_s']:,.0f} | "
            f"{r['file_bytes']:,} B | {', '.join(r['heavy']) or 'none'} |"
        )
    exports = ", ".join(f"{r['model']} {r['export_s']:.1f} s" for r in rows if r["export_s"])
    print(f"\nexport seconds: {exports}; medians of {args.repeats} processes each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
