"""The commands that train, evaluate, predict, serve and look at data."""

from __future__ import annotations

import sys
from pathlib import Path

from digitlab import _files
from digitlab.cli.output import fail, print_json
from digitlab.errors import ConfigError

_TRAIN_FIELDS = (
    "hidden",
    "activation",
    "dropout_rate",
    "optimizer",
    "learning_rate",
    "lr_schedule",
    "epochs",
    "batch_size",
    "label_smoothing",
    "augment",
    "elastic",
    "early_stopping",
    "restore_best",
    "split",
    "validation_size",
    "seed",
    "dataset",
    "calibrate",
    "calibration_size",
    "engine",
)


def _train_config(args):
    """The resolved config: the flags given, over the model's defaults, over
    the tutorial's (:meth:`TrainConfig.for_model`)."""
    from digitlab.config import TrainConfig

    given = {name: getattr(args, name) for name in _TRAIN_FIELDS}
    return TrainConfig.for_model(
        args.model, **{name: value for name, value in given.items() if value is not None}
    )


def cmd_train(args) -> int:
    from digitlab.runs import default_run_dir

    config = _train_config(args)
    run_dir = args.run_dir if args.run_dir is not None else default_run_dir(config.model)
    try:
        return _train_and_report(args, config, run_dir)
    except KeyboardInterrupt:
        # Interrupted after the run folder was renamed into place: the run is
        # complete, so say where it is before saying it was interrupted.
        if _is_saved_run(run_dir):
            print(f"run folder: {run_dir}", file=sys.stderr if args.json else sys.stdout)
        raise


def _is_saved_run(path: Path) -> bool:
    from digitlab.runs.schema import METRICS_FILE

    return path.is_dir() and not path.is_symlink() and (path / METRICS_FILE).is_file()


def _train_and_report(args, config, run_dir: Path) -> int:
    from digitlab.training import train

    log = sys.stderr if args.json else sys.stdout
    run = train(
        config,
        data_dir=args.data_dir,
        run_dir=run_dir,
        verbose=0 if args.quiet else 1,
        plots_enabled=not args.no_plots,
        log=log,
    )
    metrics = run.metrics.to_dict()
    if args.json:
        print_json(_run_summary(run, metrics))
        return 0
    print(f"\n{run.params:,} {run.info.size_unit}, trained in {run.info.train_seconds:.1f} s")
    _print_evaluation(metrics)
    calibration = run.info.calibration
    if calibration:
        print(
            f"calibrated: temperature {calibration['temperature']:.3f} fitted on "
            f"{calibration['size']:,} {calibration['fitted_on']} images "
            f"(ECE there {calibration['ece_before']:.4f} before)"
        )
    print(f"run folder: {run.path}")
    if run.is_digits:
        if run.config.model != "cnn":
            print(f"to read your own handwriting, train the strong model: {strong_model_command()}")
        print(
            f"read photos: digitlab predict {run.path} photo.jpg; "
            f"draw on a page: digitlab serve {run.path}"
        )
    return 0


def strong_model_command() -> str:
    """The one command that trains the model for people's own handwriting:
    ``cnn`` on the official split, trained by PyTorch where it is installed
    (:func:`digitlab.models.default_engine`), which names the one extra it
    needs where it is not."""
    from digitlab.models import default_engine

    command = "digitlab train --model cnn --split official"
    if default_engine("cnn") == "keras":
        command += " (after pip install 'digitlab[torch]', it trains twice the epochs in less time)"
    return command


def cmd_ensemble(args) -> int:
    from digitlab.ensemble import ensemble

    run = ensemble(
        args.runs, run_dir=args.run_dir, data_dir=args.data_dir, plots_enabled=not args.no_plots
    )
    metrics = run.metrics.to_dict()
    if args.json:
        print_json(_run_summary(run, metrics))
        return 0
    members = run.info.extra["ensemble"]["members"]
    accuracies = ", ".join(f"{m['accuracy']:.4f}" for m in members)
    print(f"{len(members)} runs (accuracy {accuracies}), {run.params:,} {run.info.size_unit}")
    _print_evaluation(metrics)
    print(f"run folder: {run.path}")
    return 0


def cmd_evaluate(args) -> int:
    from digitlab.evaluation import evaluate
    from digitlab.runs import load_run

    run = load_run(args.run)
    dataset, which, x, labels = _run_data(args, run)
    metrics = evaluate(run, x, labels, set_name=which, class_names=run.class_names).to_dict()
    if args.json:
        print_json(_run_summary(run, metrics))
    else:
        _print_evaluation(metrics)
        print()
        print(classification_table(metrics))
        print(
            f"\nECE {metrics['ece']:.4f}: when the model says it is p sure, it is right "
            f"p of the time give or take {metrics['ece']:.1%} on average "
            "(expected calibration error over 15 confidence bands; 0 is perfect)."
        )
    return 0


def classification_table(metrics: dict) -> str:
    """Per-class precision, recall, F1 and support, like scikit-learn's
    ``classification_report``, then the accuracy and the macro average."""
    per_class = metrics["per_class"]
    width = max(12, *(len(name) for name in per_class))
    lines = [f"{'':>{width}}  precision  recall  f1-score  support"]
    for name, row in per_class.items():
        lines.append(
            f"{name:>{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
            f"{row['f1']:8.4f}  {row['support']:7,}"
        )
    total = sum(row["support"] for row in per_class.values())
    k = max(len(per_class), 1)
    macro = [sum(row[key] for row in per_class.values()) / k for key in ("precision", "recall")]
    lines.append("")
    lines.append(f"{'accuracy':>{width}}  {'':9}  {'':6}  {metrics['accuracy']:8.4f}  {total:7,}")
    lines.append(
        f"{'macro avg':>{width}}  {macro[0]:9.4f}  {macro[1]:6.4f}  "
        f"{metrics['macro_f1']:8.4f}  {total:7,}"
    )
    return "\n".join(lines)


def cmd_report(args) -> int:
    from digitlab.report import write_report
    from digitlab.runs import load_run

    path = write_report(load_run(args.run))
    if args.json:
        print_json({"report": str(path)})
    else:
        print(f"wrote {path}")
    return 0


def cmd_serve(args) -> int:
    try:
        from digitlab.serve import serve
    except ImportError as exc:
        return fail(str(exc))

    serve(
        args.run,
        host=args.host,
        port=args.port,
        max_concurrency=args.max_concurrency,
        workers=args.workers,
        max_queue=args.max_queue,
        allowed_hosts=args.allowed_hosts,
        allow_origins=args.allow_origins,
        access_log=not args.quiet,
        runtime=args.runtime,
    )
    return 0


def cmd_data_fetch(args) -> int:
    from digitlab.data import fetch

    name = args.dataset or "mnist"
    got = fetch.fetch_dataset(name, args.data_dir, progress=not (args.quiet or args.json))
    result = {
        "source": got.source,
        "files": {k: str(p) for k, p in got.paths.items()},
        "sha256": got.sha256,
        "verified": True,
    }
    if args.json:
        print_json(result)
    else:
        print(f"{name} verified ({got.source})")
        for key, path in got.paths.items():
            print(f"  {key:<13} {path}")
    return 0


def cmd_data_info(args) -> int:
    from digitlab import data

    info = data.load_dataset(
        args.data_dir, dataset=args.dataset, progress=not (args.quiet or args.json)
    ).info()
    if args.json:
        print_json(info)
        return 0
    print(f"{info['name']}: {info['num_classes']} classes, from {info['source']}")
    for part in ("train", "test"):
        p = info[part]
        shape = "x".join(map(str, p["image_shape"]))
        print(f"  {part:<5} {p['count']:>7,} images of {shape} {p['dtype']}")
        print("        per class: " + ", ".join(f"{k}: {v}" for k, v in p["class_counts"].items()))
    print(f"  checksums: {info['checksums']}")
    for key, digest in info["sha256"].items():
        print(f"    {key:<13} {digest}")
    return 0


def cmd_data_show(args) -> int:
    from digitlab import data

    dataset = data.load_dataset(args.data_dir, dataset=args.dataset)
    images, labels = (
        (dataset.x_train, dataset.y_train)
        if args.set == "train"
        else (dataset.x_test, dataset.y_test)
    )
    if args.index is not None:
        if not 0 <= args.index < len(images):
            raise ConfigError(
                f"--index: expected 0..{len(images) - 1} for the {len(images):,} {args.set} "
                f"images. Received: {args.index}"
            )
        label = int(labels[args.index])
        if args.json:
            print_json(
                {
                    "set": args.set,
                    "index": args.index,
                    "label": label,
                    "class_name": dataset.class_names[label],
                    "pixels": images[args.index].tolist(),
                }
            )
            return 0
        print(f"{args.set} image {args.index}: label {dataset.class_names[label]}")
        print(terminal_image(images[args.index]))
        return 0
    from digitlab import plots

    if args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out: expected a .png file name. Received: {args.out}")
    if args.out.exists() and not plots.is_own_png(args.out):
        raise ConfigError(
            f"--out: expected a new file or a PNG digitlab wrote. {args.out} exists and is "
            "not one: choose another name"
        )
    count = min(args.count, len(images))
    fig = plots.plot_samples(images, labels, dataset.class_names, count=args.count)
    _files.write_with(args.out, lambda tmp: plots.save_figure(fig, tmp))
    if args.json:
        print_json({"out": str(args.out), "set": args.set, "count": count})
    else:
        print(f"wrote {count} {args.set} images to {args.out}")
    return 0


# --------------------------------------------------------------------------- helpers


def terminal_image(image) -> str:
    """One image as text: two pixel rows per line with half-block characters
    would need colours; plain shades read everywhere."""
    import numpy as np

    shades = " ░▒▓█"
    pixels = np.asarray(image, dtype=np.float64)
    if pixels.max() > 1:
        pixels = pixels / 255.0
    if pixels.ndim == 3:
        pixels = pixels[..., 0]
    rows = []
    for row in pixels:
        rows.append("".join(shades[min(int(v * len(shades)), len(shades) - 1)] * 2 for v in row))
    return "\n".join(rows)


def _run_data(args, run):
    """The dataset a run was trained on, and the set ``--set`` names (default:
    the run's own evaluation set): ``(dataset, set name, images, labels)``.

    ``--data-dir`` and ``--dataset`` choose the data; without them the run's
    own dataset is loaded when it is a known one (MNIST, Fashion-MNIST).
    """
    import os

    from digitlab import data

    recorded = run.info.data.name.split("[", 1)[0]  # "mnist[:6000/1000]": a part of MNIST
    name = args.dataset or run.config.dataset
    if name is None and recorded in data.DATASETS and recorded != "mnist":
        name = recorded
    folder_given = args.data_dir is not None or os.environ.get("DIGITLAB_DATA_DIR")
    if name is None and not folder_given and recorded not in data.DATASETS:
        raise ConfigError(
            f"--data-dir: expected the folder of the data the run was trained on "
            f"({run.info.data.name}, from {run.info.data.source})"
        )
    dataset = data.load_dataset(args.data_dir, dataset=name, progress=not (args.quiet or args.json))
    if tuple(dataset.image_shape) != run.image_shape:
        raise ConfigError(
            f"--data-dir: expected images of shape {run.image_shape} like the run was trained "
            f"on. Found {tuple(dataset.image_shape)}"
        )
    if dataset.num_classes != len(run.class_names):
        raise ConfigError(
            f"--data-dir: expected {len(run.class_names)} classes like the run was trained on. "
            f"Found {dataset.num_classes} in {dataset.name}"
        )
    which = args.set or run.info.data.eval_set
    x, labels = data.eval_arrays(
        dataset, which, seed=run.config.seed, validation_size=run.config.validation_size
    )
    return dataset, which, x, labels


def _run_summary(run, metrics: dict) -> dict:
    return {
        "run_dir": str(run.path),
        "params": run.params,
        "model": run.config.model,
        "config": run.config.to_dict(),
        "train_seconds": run.info.train_seconds,
        "compile_seconds": run.info.compile_seconds,
        "calibration": run.info.calibration,
        "seconds_per_epoch": run.info.seconds_per_epoch,
        "eval": metrics,
    }


def _print_evaluation(metrics: dict) -> None:
    print(
        f"{metrics['set']} set: accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f} "
        f"on {metrics['size']:,} images (ECE {metrics['ece']:.4f})"
    )
