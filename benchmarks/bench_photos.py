"""How much accuracy the photo -> prediction path loses.

Takes ``--count`` random MNIST test digits and compares the run's accuracy on

1. the raw 28x28 digits, straight into the model, and
2. simulated phone photos of the same digits (``digitlab.inference.images.render_photo``:
   JPEG, random size, place, rotation, blur, ink, paper texture, lighting,
   colour cast and noise) read through the whole pipeline that ``digitlab
   predict`` and the server use (``read_image``: decode, find the ink, crop,
   normalise like MNIST, predict),

and prints both and the gap in percentage points.  The requirement is a gap of
at most 1.5 points for a run trained on the official split; exits 1 above it.
Without ``--run`` it trains one (``digitlab train --split official``, ~20 s).

    python benchmarks/bench_photos.py [--run RUN] [--count 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REQUIRED_GAP_POINTS = 1.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="run folder (default: train the official split)")
    parser.add_argument("--count", type=int, default=1000, help="test digits to photograph")
    parser.add_argument("--seed", type=int, default=0, help="chooses the digits and the photos")
    args = parser.parse_args()

    from digitlab.data import load_dataset, scale
    from digitlab.inference import Predictor, read_image
    from digitlab.inference.images import render_photo
    from digitlab.runs import load_run

    dataset = load_dataset(progress=False)
    run_dir = args.run
    if run_dir is None:
        from digitlab.config import TrainConfig
        from digitlab.training import train

        run_dir = Path(tempfile.mkdtemp(prefix="bench-photos-")) / "run"
        print(f"training the tutorial MLP on the official split into {run_dir} ...")
        train(
            TrainConfig(split="official"),
            dataset=dataset,
            run_dir=run_dir,
            verbose=0,
            plots_enabled=False,
        )
    predictor = Predictor(load_run(run_dir))

    rng = np.random.default_rng(args.seed)
    indices = rng.choice(
        len(dataset.x_test), size=min(args.count, len(dataset.x_test)), replace=False
    )
    labels = dataset.y_test[indices].astype(int)
    raw = predictor.predict_proba(scale(dataset.x_test[indices])).argmax(axis=1)

    start = time.perf_counter()
    read = np.empty(len(indices), dtype=int)
    no_digit = 0
    for k, index in enumerate(indices):
        photo = render_photo(dataset.x_test[index], rng=rng)
        result = read_image(predictor, photo, single=True, threshold=0.0)
        if result["status"] == "no digit":
            no_digit += 1
            read[k] = -1
        else:
            read[k] = result["top3"][0]["digit"]
    seconds = time.perf_counter() - start

    raw_accuracy = float((raw == labels).mean())
    photo_accuracy = float((read == labels).mean())
    gap = 100 * (raw_accuracy - photo_accuracy)
    both_wrong = int(((raw != labels) & (read != labels)).sum())
    lost = int(((raw == labels) & (read != labels)).sum())
    gained = int(((raw != labels) & (read == labels)).sum())
    print(f"run: {run_dir}")
    print(f"test digits: {len(indices):,} (seed {args.seed})")
    print(f"raw 28x28 accuracy:          {100 * raw_accuracy:6.2f} %")
    print(
        f"photo pipeline accuracy:     {100 * photo_accuracy:6.2f} %   "
        f"({1e3 * seconds / len(indices):.0f} ms per photo incl. rendering; "
        f"{no_digit} photos with no digit found)"
    )
    print(
        f"gap: {gap:+.2f} points (raw right/photo wrong {lost}, "
        f"raw wrong/photo right {gained}, "
        f"both wrong {both_wrong}); requirement <= {REQUIRED_GAP_POINTS} points: "
        f"{'PASS' if gap <= REQUIRED_GAP_POINTS else 'FAIL'}"
    )
    return 0 if gap <= REQUIRED_GAP_POINTS else 1


if __name__ == "__main__":
    sys.exit(main())
