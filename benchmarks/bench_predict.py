"""In-process inference speed: one image at a time, and batches.

Single-image latency (median and p99 over ``--calls`` calls) of

1. ``model.predict`` (Keras' general entry point: callbacks, a data adapter),
2. ``model.predict_on_batch`` (what ``digitlab.inference.predict_proba`` uses),
3. ``digitlab.inference.Predictor`` (a compiled predict function, warmed up),
4. ``read_image`` on a 280x280 canvas PNG (decode, find the ink, normalise, predict),

then batch throughput (images/s) on the 10,000 test images (or the first
``--images``) at batch 1024 for
the MLP and for the two convnets (``cnn``, ``cnn-fast``), and the ratios.  Uses
``--run`` or trains the tutorial MLP for one epoch into a temporary folder (the
weights do not change the speed).

    python benchmarks/bench_predict.py [--run RUN] [--calls 2000] [--images 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from _machine import best_seconds

#: Goal for the convnets' batch throughput on a 2-core CPU (issue 5).
CNN_TARGET = 50_000


def timings(function, calls: int) -> np.ndarray:
    """Seconds per call of ``function()``, after 20 warm-up calls."""
    for _ in range(20):
        function()
    seconds = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        function()
        seconds[i] = time.perf_counter() - start
    return seconds


def line(name: str, seconds: np.ndarray) -> float:
    median = float(np.median(seconds)) * 1e3
    p99 = float(np.percentile(seconds, 99)) * 1e3
    print(f"{name:<34} median {median:7.3f} ms   p99 {p99:7.3f} ms   ({len(seconds)} calls)")
    return median


def throughput(name: str, function, images: int, repeats: int = 3) -> float:
    rate = images / best_seconds(function, repeats)
    print(f"{name:<34} {rate:12,.0f} images/s   ({images:,} images, best of {repeats})")
    return rate


def canvas_png() -> bytes:
    """A '7' drawn like the web page does: black 20 px round strokes on white 280x280."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (280, 280), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(70, 60), (210, 60), (120, 240)], fill="black", width=20, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="run folder (default: train one epoch)")
    parser.add_argument("--calls", type=int, default=2000, help="single-image calls per method")
    parser.add_argument(
        "--images", type=int, default=10_000, help="test images per batch-throughput pass"
    )
    args = parser.parse_args()
    if not 1 <= args.images <= 10_000:
        parser.error(f"expected --images from 1 to 10000. Received: --images={args.images}")

    from digitlab.data import load_dataset, scale
    from digitlab.inference import Predictor, predict_proba, read_image
    from digitlab.runs import load_run

    dataset = load_dataset(progress=False)
    run_dir = args.run
    if run_dir is None:
        from digitlab.config import TrainConfig
        from digitlab.training import train

        run_dir = Path(tempfile.mkdtemp(prefix="bench-predict-")) / "run"
        train(
            TrainConfig(epochs=1), dataset=dataset, run_dir=run_dir, verbose=0, plots_enabled=False
        )
    run = load_run(run_dir)
    model = run.model
    start = time.perf_counter()
    predictor = Predictor(run)
    warm_up = time.perf_counter() - start
    print(
        f"run: {run_dir} ({run.params:,} parameters, "
        f"Keras backend {os.environ.get('KERAS_BACKEND')})"
    )
    print(f"Predictor path: {predictor.backend}, built and warmed up in {warm_up * 1e3:.0f} ms")

    x_test = scale(dataset.x_test)
    one = x_test[:1]
    print(f"\nsingle image, in process ({os.cpu_count()} CPU cores)")
    keras_predict = line(
        "model.predict", timings(lambda: model.predict(one, verbose=0), args.calls)
    )
    on_batch = line(
        "model.predict_on_batch", timings(lambda: model.predict_on_batch(one), args.calls)
    )
    fast = line(
        "Predictor.predict_one", timings(lambda: predictor.predict_one(x_test[0]), args.calls)
    )
    png = canvas_png()
    pipeline_calls = max(50, args.calls // 10)
    full = line(
        "read_image(280x280 canvas PNG)",
        timings(lambda: read_image(predictor, png, single=True), pipeline_calls),
    )

    x_test = x_test[: args.images]
    print("\nbatch throughput, batch 1024")
    rate_predict = throughput(
        "model.predict", lambda: model.predict(x_test, batch_size=1024, verbose=0), len(x_test)
    )
    rate_on_batch = throughput(
        "predict_proba (predict_on_batch)", lambda: predict_proba(model, x_test), len(x_test)
    )
    rate_fast = throughput(
        "Predictor.predict_proba", lambda: predictor.predict_proba(x_test), len(x_test)
    )
    same = np.allclose(predictor.predict_proba(x_test), predict_proba(model, x_test), atol=1e-5)

    cnn_rates = convnet_throughput(x_test)

    print(
        f"\nratio: one image, Predictor is {keras_predict / fast:.1f}x faster than model.predict "
        f"and {on_batch / fast:.1f}x faster than predict_on_batch; "
        f"the image pipeline adds {full - fast:.1f} ms"
    )
    print(
        f"ratio: batch 1024, Predictor {rate_fast / rate_predict:.2f}x model.predict, "
        f"{rate_fast / rate_on_batch:.2f}x predict_on_batch; same probabilities: {same}"
    )
    for name, (keras_rate, fast_rate) in cnn_rates.items():
        print(
            f"ratio: batch 1024, {name}: Predictor {fast_rate / keras_rate:.2f}x model.predict, "
            f"{fast_rate / CNN_TARGET:.2f}x the {CNN_TARGET:,} images/s target"
        )


def convnet_throughput(x_test) -> dict[str, tuple[float, float]]:
    """Batch throughput of the convnets.  Their weights do not change the speed,
    so the models are built, not trained."""
    from digitlab.config import TrainConfig
    from digitlab.inference import Predictor
    from digitlab.models import build_model

    rates = {}
    for name in ("cnn", "cnn-fast"):
        model = build_model(TrainConfig.for_model(name), x_test.shape[1:], 10, steps_per_epoch=1)
        print(f"\nbatch throughput, batch 1024: {name} ({model.count_params():,} parameters)")
        predictor = Predictor(model)
        rates[name] = (
            throughput(
                "model.predict",
                lambda m=model: m.predict(x_test, batch_size=1024, verbose=0),
                len(x_test),
            ),
            throughput(
                "Predictor.predict_proba",
                lambda p=predictor: p.predict_proba(x_test),
                len(x_test),
            ),
        )
    return rates


if __name__ == "__main__":
    main()
