"""The commands that train, evaluate, predict, serve and look at data."""

from __future__ import annotations

import sys
from pathlib import Path

from digitlab import _files
from digitlab.cli.output import EXIT_USAGE, fail, print_json
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
    "early_stopping",
    "restore_best",
    "split",
    "validation_size",
    "seed",
    "dataset",
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
    from digitlab.training import train

    config = _train_config(args)
    log = sys.stderr if args.json else sys.stdout
    run = train(
        config,
        data_dir=args.data_dir,
        run_dir=args.run_dir,
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
    return 0


def cmd_predict(args) -> int:
    if bool(args.images) == (args.index is not None):
        found = "both" if args.images else "neither"
        return fail(
            f"predict: expected image files or --index N, one of the two. Received: {found}"
        )
    if args.images:
        return _predict_files(args)
    return _predict_index(args)


def _predict_files(args) -> int:
    """Read each image file; a bad file is one stderr line, the others still run, exit 2."""
    from digitlab.errors import ImageError
    from digitlab.inference import Predictor, read_image
    from digitlab.runs import load_run

    predictor = Predictor(load_run(args.run))
    results, failed, used_names = [], 0, set()
    for path in args.images:
        try:
            result = read_image(
                predictor, path, name=str(path), single=args.single, threshold=args.threshold
            )
        except ImageError as exc:
            failed += 1
            fail(str(exc))
            results.append({"file": str(path), "status": "error", "error": str(exc)})
            continue
        if args.preview is not None:
            result["preview"] = _save_previews(args.preview, path, result["images"], used_names)
        results.append(result)
        if not args.json:
            print(_describe_reading(result, args.threshold))
    if args.json:
        print_json(results)
    return EXIT_USAGE if failed else 0


def _describe_reading(result: dict, threshold: float) -> str:
    """One line: ``digit.png: 7 (probability 0.9812; top 3: 7 0.981, 1 0.010, 9 0.004)``."""
    top3 = ", ".join(f"{t['class_name']} {t['probability']:.3f}" for t in result["top3"])
    if result["status"] == "no digit":
        return f"{result['file']}: no digit found"
    count = f"{result['digits']} digits, " if result["digits"] > 1 else ""
    if result["status"] == "not sure":
        best = result["top3"][0]["class_name"]
        return (
            f"{result['file']}: not sure ({count}best {best} with probability "
            f"{result['probability']:.4f} < {threshold:g}; top 3: {top3})"
        )
    return (
        f"{result['file']}: {result['class_name']} "
        f"({count}probability {result['probability']:.4f}; top 3: {top3})"
    )


def _save_previews(folder: Path, source: Path, data_urls: list[str], used: set) -> list[str]:
    """Write each 28x28 image the model saw as ``folder/<stem>[-k].png``, atomically."""
    from digitlab.inference import decode_data_url

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for k, url in enumerate(data_urls, start=1):
        stem = source.stem if len(data_urls) == 1 else f"{source.stem}-{k}"
        name, n = f"{stem}.png", 1
        while name in used:  # two inputs with the same name from different folders
            n += 1
            name = f"{stem}-{n}.png"
        used.add(name)
        png = decode_data_url(url)
        _files.write_bytes(folder / name, png)
        written.append(str(folder / name))
    return written


def _predict_index(args) -> int:
    import numpy as np

    from digitlab.runs import load_run

    run = load_run(args.run)
    dataset, which, x, labels = _run_data(args, run)
    if not 0 <= args.index < len(x):
        raise ConfigError(
            f"--index: expected 0..{len(x) - 1} for the {len(x):,} {which} images. "
            f"Received: {args.index}"
        )
    probs = run.predict_proba(x[args.index : args.index + 1])[0].astype(np.float64)
    names = run.class_names
    digit = int(probs.argmax())
    result = {
        "set": which,
        "index": args.index,
        "digit": digit if run.is_digits else None,
        "class_index": digit,
        "class_name": names[digit],
        "true": int(labels[args.index]),
        "probability": float(probs[digit]),
        "probabilities": [float(p) for p in probs],
    }
    if args.json:
        print_json(result)
        return 0
    print(f"image {args.index} of the {which} set (true label {names[result['true']]})")
    print(f"prediction: {names[digit]} with probability {probs[digit]:.4f}")
    width = max(3, *(len(name) for name in names))
    for i, p in enumerate(probs):
        bar = "█" * round(p * 40)
        print(f"  {names[i]:>{width}}  {p:.4f}  {bar}")
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
        max_queue=args.max_queue,
        access_log=not args.quiet,
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
        print(f"{args.set} image {args.index}: label {dataset.class_names[labels[args.index]]}")
        print(terminal_image(images[args.index]))
        return 0
    from digitlab import plots

    if args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out: expected a .png file name. Received: {args.out}")
    fig = plots.plot_samples(images, labels, dataset.class_names, count=args.count)
    _files.write_with(args.out, lambda tmp: plots.save_figure(fig, tmp))
    print(f"wrote {min(args.count, len(images))} {args.set} images to {args.out}")
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
    dataset = data.load_dataset(
        args.data_dir, dataset=name, progress=not (args.quiet or args.json)
    )
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
        "seconds_per_epoch": run.info.seconds_per_epoch,
        "eval": metrics,
    }


def _print_evaluation(metrics: dict) -> None:
    print(
        f"{metrics['set']} set: accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f} "
        f"on {metrics['size']:,} images (ECE {metrics['ece']:.4f})"
    )
