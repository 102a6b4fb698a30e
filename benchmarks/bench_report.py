"""How long a run's report figures take to draw and save.

``digitlab train`` ends by writing the run's PNGs (:func:`digitlab.plots.save_report`):
the confusion matrix, training curves, predictions, worst mistakes, reliability
diagram and, for Keras networks, what the first layer learned and why the worst
mistakes were made.  This times each figure (build, then save) for a run
folder's model on the first ``--images`` test images, ``--repeats`` times, and
prints the medians and their total::

    python benchmarks/bench_report.py RUN [--images 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder")
    parser.add_argument("--images", type=int, default=2000, help="test images scored")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median)")
    args = parser.parse_args(argv)
    if not 1 <= args.images <= 10_000 or args.repeats < 1:
        parser.error(
            f"expected --images from 1 to 10000 and --repeats of at least 1. "
            f"Received: --images={args.images} --repeats={args.repeats}"
        )

    from digitlab import plots
    from digitlab.data import load_dataset, scale
    from digitlab.errors import DigitlabError
    from digitlab.evaluation import score
    from digitlab.runs import load_run

    try:
        run = load_run(args.run)
    except DigitlabError as exc:
        parser.error(str(exc))
    dataset = load_dataset(progress=False)
    x = scale(dataset.x_test[: args.images])
    labels = dataset.y_test[: args.images].astype(int)
    evaluation = score(run.predict_proba(x), labels, class_names=dataset.class_names)
    history = dict(run.history.curves) if run.history else {}
    figures = {
        "confusion_matrix": lambda: plots.plot_confusion_matrix(evaluation),
        "training_curves": lambda: plots.plot_training_curves(history) if history else None,
        "predictions": lambda: plots.plot_predictions(x, evaluation),
        "mistakes": lambda: plots.plot_mistakes(x, evaluation),
        "reliability": lambda: plots.plot_reliability(evaluation),
        "weights, saliency": lambda: plots._look_inside(run.classifier, evaluation, x),
    }
    folder = Path(tempfile.mkdtemp(prefix="bench-report-"))
    plots.save_report(folder, evaluation, history, x, classifier=run.classifier)  # warm-up
    print(f"run: {args.run} ({run.config.model}), {len(x):,} test images, {args.repeats} repeats")
    total = 0.0
    for name, build in figures.items():
        builds, saves = [], []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            made = build()
            middle = time.perf_counter()
            made = made if isinstance(made, dict) else {name: made}
            for key, fig in made.items():
                if fig is not None:
                    plots.save_figure(fig, folder / f"{key}-{repeat}.png")
            builds.append(middle - start)
            saves.append(time.perf_counter() - middle)
        b, s = statistics.median(builds), statistics.median(saves)
        total += b + s
        print(f"{name:<18} build {b:6.3f} s   save {s:6.3f} s")
    print(f"report figures: {total:.2f} s in all (medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
