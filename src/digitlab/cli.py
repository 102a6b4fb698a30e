"""The ``digitlab`` command line.

Each subcommand parses its flags, builds the library's config objects at the
edge and calls the public API.  Anything a user can get wrong ends as one line
on stderr and exit status 2; heavy libraries load only in the commands that
need them, so ``digitlab --help`` and ``digitlab data info`` stay quick.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from digitlab import __version__
from digitlab.errors import ConfigError, DigitlabError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line, exit 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args) or 0
    except DigitlabError as exc:
        return _fail(str(exc))
    except OSError as exc:  # permissions, full disk, a path that is a file…
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return _fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        print("digitlab: interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    print(f"digitlab: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="digitlab",
        description="Recognise handwritten digits: the MNIST tutorial, reproduced and extended.",
    )
    parser.add_argument("--version", action="version", version=f"digitlab {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    p = commands.add_parser("train", help="train a model (default: the tutorial) into a run folder")
    _add_train_options(p)
    _add_data_dir(p)
    p.add_argument("--run-dir", type=Path, help="where to write the run (default: runs/DATE-MODEL)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    _add_output_options(p)
    p.set_defaults(handler=cmd_train)

    p = commands.add_parser("evaluate", help="evaluate a saved run on a chosen set")
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument(
        "--set",
        choices=("validation", "test", "train"),
        help="images to evaluate on (default: the run's own evaluation set)",
    )
    _add_data_dir(p)
    _add_output_options(p)
    p.set_defaults(handler=cmd_evaluate)

    p = commands.add_parser(
        "predict",
        help="read the digits in image files, or predict one image of the evaluation set",
        description="Read the digit, or the number, in each image file; or, with --index, "
        "predict one image of the dataset. With images, --json prints a JSON list with one "
        "object per image; an unreadable image is reported (one line on stderr, an 'error' "
        "entry in the list), the others are still read, and the exit status is 2.",
    )
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument(
        "images",
        nargs="*",
        type=Path,
        metavar="IMAGE",
        help="PNG, JPEG, GIF, BMP, TIFF or WebP files of handwriting (a digit or a number)",
    )
    p.add_argument("--index", type=int, help="instead of images: image number in the set")
    p.add_argument(
        "--set",
        choices=("validation", "test", "train"),
        help="with --index: set to take the image from (default: the run's evaluation set)",
    )
    p.add_argument(
        "--single", action="store_true", help="read all the ink as one digit (no numbers)"
    )
    p.add_argument(
        "--threshold",
        type=_probability,
        default=0.5,
        help="least probability to name a digit, else 'not sure' (default: 0.5)",
    )
    p.add_argument(
        "--preview", type=Path, metavar="DIR", help="save the 28x28 images the model saw here"
    )
    _add_data_dir(p)
    _add_output_options(p)
    p.set_defaults(handler=cmd_predict)

    p = commands.add_parser("serve", help="serve the drawing page and the HTTP API for a run")
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=_non_negative_int, default=8000, help="port (default: 8000; 0: any free)"
    )
    p.add_argument(
        "--max-concurrency",
        type=_positive_int,
        help="predictions running at once (default: the number of CPU cores)",
    )
    p.add_argument(
        "--max-queue",
        type=_non_negative_int,
        default=16,
        help="predictions allowed to wait; beyond that requests get 503 (default: 16)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no access log")
    p.set_defaults(handler=cmd_serve)

    p = commands.add_parser(
        "compare", help="train several models on the same data and compare them in a table"
    )
    p.add_argument(
        "--models",
        type=_name_list,
        help="comma-separated model names (default: every model but svm, which is slow)",
    )
    _add_experiment_options(p)
    p.add_argument("--seed", type=_non_negative_int, default=42, help="(default: 42)")
    p.add_argument("--out", type=Path, help="new folder for it all (default: runs/DATE-compare)")
    p.add_argument("--no-plots", action="store_true", help="skip each run's PNG plots")
    _add_data_dir(p)
    _add_output_options(p)
    p.set_defaults(handler=cmd_compare)

    p = commands.add_parser(
        "sweep", help="train a grid of configs (neurons x layers x seeds, any field) and summarise"
    )
    p.add_argument("--model", default="mlp", help="model name (default: mlp)")
    p.add_argument(
        "--hidden", type=_int_list, help="neurons per hidden layer to try, e.g. 32,64,128"
    )
    p.add_argument("--layers", type=_int_list, help="numbers of hidden layers to try, e.g. 1,2,3")
    p.add_argument("--seeds", type=_positive_int, help="repeat each point with seeds 0..N-1")
    p.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="also vary (or fix) any config field, e.g. --set optimizer=sgd,adam; "
        "hidden sizes join with +, e.g. --set hidden=256+128,512; repeatable",
    )
    _add_experiment_options(p)
    p.add_argument(
        "--out", type=Path, help="sweep folder; reuse it to resume (default: runs/DATE-sweep)"
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="trials at once in local processes (default: 1; XLA already uses every core)",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="run trials on this Ray cluster (host:port or auto; needs digitlab[cluster])",
    )
    p.add_argument(
        "--keep-models", action="store_true", help="keep each trial's run folder (no plots)"
    )
    _add_data_dir(p)
    _add_output_options(p)
    p.set_defaults(handler=cmd_sweep)

    data = commands.add_parser("data", help="get and inspect the dataset")
    data_commands = data.add_subparsers(
        title="data commands", metavar="COMMAND", parser_class=_Parser
    )
    p = data_commands.add_parser("fetch", help="download MNIST into the cache and verify it")
    _add_data_dir(p)
    _add_output_options(p)
    p.set_defaults(handler=cmd_data_fetch)
    p = data_commands.add_parser("info", help="counts, shapes, class balance, checksums")
    _add_data_dir(p)
    _add_output_options(p)
    p.set_defaults(handler=cmd_data_info)
    p = data_commands.add_parser("show", help="write a PNG grid of samples, or print one image")
    _add_data_dir(p)
    p.add_argument("--set", choices=("train", "test"), default="train")
    p.add_argument("--count", type=_positive_int, default=32, help="images in the grid")
    p.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG to write")
    p.add_argument("--index", type=int, help="print this one image in the terminal instead")
    p.set_defaults(handler=cmd_data_show)
    data.set_defaults(handler=lambda args: data.print_help() or EXIT_USAGE)
    return parser


def _add_train_options(p: argparse.ArgumentParser) -> None:
    from digitlab.config import ACTIVATIONS, LR_SCHEDULES, OPTIMIZERS, SPLITS, TrainConfig

    d = TrainConfig()
    # Options left out (None) take the model's defaults, then the tutorial's:
    # `--model cnn` alone trains the CNN its own way (config.MODEL_DEFAULTS).
    # See _train_config.
    p.add_argument(
        "--model",
        default=d.model,
        help=f"model name (default: {d.model}, the tutorial); cnn is the strong convnet, "
        "cnn-fast the quick one; the scikit-learn baselines are "
        "rf, logreg, knn, gnb, bnb and svm (slow); digitlab compare --help lists all",
    )
    p.add_argument(
        "--hidden",
        type=_int_list,
        help="hidden layer sizes, comma-separated " + _defaults_help("hidden", "128"),
    )
    p.add_argument("--activation", choices=ACTIVATIONS, help=_defaults_help("activation"))
    p.add_argument(
        "--dropout",
        dest="dropout_rate",
        type=float,
        help="dropout rate after the hidden layers " + _defaults_help("dropout_rate"),
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=_defaults_help("optimizer"))
    p.add_argument(
        "--learning-rate",
        type=float,
        help=_defaults_help("learning_rate", "the optimizer's own, SGD's is 0.01"),
    )
    p.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        help="constant, or cosine: a short warm-up, then down to 0 by the last batch "
        + _defaults_help("lr_schedule"),
    )
    p.add_argument("--epochs", type=_positive_int, help=_defaults_help("epochs"))
    p.add_argument("--batch-size", type=_positive_int, help=_defaults_help("batch_size"))
    p.add_argument(
        "--label-smoothing",
        type=float,
        help="share of each target spread over the other classes "
        + _defaults_help("label_smoothing"),
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help="randomly rotate, zoom and shift the training images (cnn models only) "
        + _defaults_help("augment"),
    )
    p.add_argument(
        "--early-stopping",
        type=_non_negative_int,
        metavar="EPOCHS",
        help="stop when the validation loss has not improved for this many epochs "
        "(default: 0, off; tutorial split only)",
    )
    p.add_argument(
        "--restore-best",
        action=argparse.BooleanOptionalAction,
        help="end with the weights of the epoch of lowest validation loss "
        "(default: off; tutorial split only)",
    )
    p.add_argument(
        "--split",
        choices=SPLITS,
        help="tutorial (default): 45,000/15,000 of the training set; official: 60,000/10,000 test",
    )
    p.add_argument("--validation-size", type=_positive_int, help=_defaults_help("validation_size"))
    p.add_argument("--seed", type=_non_negative_int, help=_defaults_help("seed"))


def _defaults_help(field: str, tutorial: str | None = None) -> str:
    """'(default: V; cnn: W, ...)': the tutorial's value, then the models' own."""
    from digitlab.config import MODEL_DEFAULTS, TrainConfig

    def shown(value) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, tuple):
            return ",".join(map(str, value))
        return str(value)

    text = tutorial if tutorial is not None else shown(getattr(TrainConfig(), field))
    own = [f"{model}: {shown(d[field])}" for model, d in MODEL_DEFAULTS.items() if field in d]
    return f"(default: {text}{'; ' + ', '.join(own) if own else ''})"


def _add_experiment_options(p: argparse.ArgumentParser) -> None:
    from digitlab.config import SPLITS

    p.add_argument(
        "--split", choices=SPLITS, default="tutorial", help="tutorial (default) or official"
    )
    p.add_argument(
        "--epochs",
        type=_positive_int,
        help="epochs for Keras models (default: each model's own: mlp 20, cnn 15, cnn-fast 1)",
    )


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        help="folder with the four IDX files (default: $DIGITLAB_DATA_DIR, the cache, or download)",
    )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, e.g. 256,128. Received: {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, e.g. 256,128. Received: {text!r}"
        )
    return values


def _name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated model names, e.g. mlp,rf. Received: {text!r}"
        )
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer. Received: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer. Received: {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1]. Received: {text!r}")
    return value


# --------------------------------------------------------------------------- commands


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
    metrics = run.metrics
    if args.json:
        _print_json(_run_summary(run, metrics))
        return 0
    print(f"\n{run.params:,} parameters, trained in {run.info['train_seconds']:.1f} s")
    _print_evaluation(metrics)
    print(f"run folder: {run.path}")
    return 0


def cmd_evaluate(args) -> int:
    from digitlab import data
    from digitlab.evaluation import evaluate
    from digitlab.runs import load_run

    run = load_run(args.run)
    dataset = data.load_dataset(args.data_dir, progress=not (args.quiet or args.json))
    which = args.set or run.info.get("data", {}).get("eval_set", "validation")
    x, labels = data.eval_arrays(
        dataset, which, seed=run.config.seed, validation_size=run.config.validation_size
    )
    _check_images_match(run, x)
    metrics = evaluate(run, x, labels, set_name=which, class_names=dataset.class_names).to_dict()
    if args.json:
        _print_json(_run_summary(run, metrics))
    else:
        _print_evaluation(metrics)
    return 0


def cmd_predict(args) -> int:
    if bool(args.images) == (args.index is not None):
        found = "both" if args.images else "neither"
        return _fail(
            f"predict: expected image files or --index N, one of the two. Received: {found}"
        )
    if args.images:
        return _predict_files(args)
    return _predict_index(args)


def _predict_files(args) -> int:
    """Read each image file; a bad file is one stderr line, the others still run, exit 2."""
    from digitlab.errors import ImageError
    from digitlab.predict import Predictor, read_image
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
            _fail(str(exc))
            results.append({"file": str(path), "status": "error", "error": str(exc)})
            continue
        if args.preview is not None:
            result["preview"] = _save_previews(args.preview, path, result["images"], used_names)
        results.append(result)
        if not args.json:
            print(_describe_reading(result, args.threshold))
    if args.json:
        _print_json(results)
    return EXIT_USAGE if failed else 0


def _describe_reading(result: dict, threshold: float) -> str:
    """One line: ``digit.png: 7 (probability 0.9812; top 3: 7 0.981, 1 0.010, 9 0.004)``."""
    top3 = ", ".join(f"{t['digit']} {t['probability']:.3f}" for t in result["top3"])
    if result["status"] == "no digit":
        return f"{result['file']}: no digit found"
    count = f"{result['digits']} digits, " if result["digits"] > 1 else ""
    if result["status"] == "not sure":
        best = result["top3"][0]["digit"]
        return (
            f"{result['file']}: not sure ({count}best {best} with probability "
            f"{result['probability']:.4f} < {threshold:g}; top 3: {top3})"
        )
    return (
        f"{result['file']}: {result['digit']} "
        f"({count}probability {result['probability']:.4f}; top 3: {top3})"
    )


def _save_previews(folder: Path, source: Path, data_urls: list[str], used: set) -> list[str]:
    """Write each 28x28 image the model saw as ``folder/<stem>[-k].png``, atomically."""
    from digitlab.predict import decode_data_url

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
        _save_atomically(folder / name, lambda tmp, png=png: Path(tmp).write_bytes(png))
        written.append(str(folder / name))
    return written


def _predict_index(args) -> int:
    import numpy as np

    from digitlab import data
    from digitlab.runs import load_run

    run = load_run(args.run)
    dataset = data.load_dataset(args.data_dir, progress=not (args.quiet or args.json))
    which = args.set or run.info.get("data", {}).get("eval_set", "validation")
    x, labels = data.eval_arrays(
        dataset, which, seed=run.config.seed, validation_size=run.config.validation_size
    )
    if not 0 <= args.index < len(x):
        raise ConfigError(
            f"--index: expected 0..{len(x) - 1} for the {len(x):,} {which} images. "
            f"Received: {args.index}"
        )
    _check_images_match(run, x)
    probs = run.predict_proba(x[args.index : args.index + 1])[0].astype(np.float64)
    names = dataset.class_names
    digit = int(probs.argmax())
    result = {
        "set": which,
        "index": args.index,
        "digit": digit,
        "class_name": names[digit],
        "true": int(labels[args.index]),
        "probability": float(probs[digit]),
        "probabilities": [float(p) for p in probs],
    }
    if args.json:
        _print_json(result)
        return 0
    print(f"image {args.index} of the {which} set (true label {names[result['true']]})")
    print(f"prediction: {names[digit]} with probability {probs[digit]:.4f}")
    for i, p in enumerate(probs):
        bar = "█" * round(p * 40)
        print(f"  {names[i]:>3}  {p:.4f}  {bar}")
    return 0


def cmd_serve(args) -> int:
    try:
        from digitlab.serve import serve
    except ImportError as exc:
        return _fail(str(exc))

    serve(
        args.run,
        host=args.host,
        port=args.port,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        access_log=not args.quiet,
    )
    return 0


def cmd_compare(args) -> int:
    from digitlab.experiments import compare
    from digitlab.training import model_names

    models = args.models or [name for name in model_names() if name != "svm"]
    settings = {"split": args.split, "seed": args.seed}
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    log = _progress_log(args)
    result = compare(
        models,
        settings=settings,
        data_dir=args.data_dir,
        out=args.out,
        plots_enabled=not args.no_plots,
        log=log,
    )
    if args.json:
        _print_json({"out": str(result.out), "rows": result.rows})
        return 0
    print()
    print(result.table())
    print(f"\nwrote {result.out}/compare.csv, compare.json and compare.png")
    return 0


def cmd_sweep(args) -> int:
    from digitlab import experiments
    from digitlab.config import TrainConfig
    from digitlab.runs import default_run_dir

    given = {"split": args.split, "epochs": args.epochs}
    base = TrainConfig.for_model(
        args.model, **{name: value for name, value in given.items() if value is not None}
    )
    grid = experiments.build_grid(
        base,
        hidden=args.hidden,
        layers=args.layers,
        seeds=args.seeds,
        assignments=[experiments.parse_assignment(text) for text in args.assignments],
    )
    configs = experiments.grid_configs(base, grid)
    out = args.out if args.out is not None else default_run_dir("sweep")
    result = experiments.run_sweep(
        configs,
        out=out,
        data_dir=args.data_dir,
        workers=args.workers,
        ray_address=args.ray_address,
        keep_models=args.keep_models,
        log=_progress_log(args),
    )
    if args.json:
        _print_json(
            {
                "out": str(result.out),
                "trials": len(result.trials),
                "skipped": result.skipped,
                "failed": [{"config": c.to_dict(), "error": e} for c, e in result.failed],
                "varied": result.varied,
                "summary": result.summary,
            }
        )
    else:
        print()
        print(experiments.format_sweep_table(result.summary, result.varied))
        print(f"\nresults in {result.out} (rerun with --out {result.out} to resume)")
    if result.failed:
        return _fail(
            f"{len(result.failed)} of {len(configs)} trials failed (see above); rerun the same "
            f"command with --out {result.out} to retry them"
        )
    return 0


def _progress_log(args):
    """Where progress lines go: stdout, stderr under --json, nowhere under --quiet."""
    import io

    if args.quiet:
        return io.StringIO()  # a few lines per model or trial, dropped at exit
    return sys.stderr if args.json else sys.stdout


def cmd_data_fetch(args) -> int:
    from digitlab.data import fetch

    got = fetch.fetch_mnist(args.data_dir, progress=not (args.quiet or args.json))
    result = {
        "source": got.source,
        "files": {k: str(p) for k, p in got.paths.items()},
        "sha256": got.sha256,
        "verified": True,
    }
    if args.json:
        _print_json(result)
    else:
        print(f"MNIST verified ({got.source})")
        for key, path in got.paths.items():
            print(f"  {key:<13} {path}")
    return 0


def cmd_data_info(args) -> int:
    from digitlab import data

    info = data.load_dataset(args.data_dir, progress=not (args.quiet or args.json)).info()
    if args.json:
        _print_json(info)
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

    dataset = data.load_dataset(args.data_dir)
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
    _save_atomically(args.out, lambda tmp: plots.save_figure(fig, tmp))
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


def _check_images_match(run, x) -> None:
    if tuple(x.shape[1:]) != run.image_shape:
        raise ConfigError(
            f"--data-dir: expected images of shape {run.image_shape} like the run was trained on. "
            f"Found {tuple(x.shape[1:])}"
        )


def _run_summary(run, metrics: dict) -> dict:
    return {
        "run_dir": str(run.path),
        "params": run.params,
        "model": run.config.model,
        "config": run.config.to_dict(),
        "train_seconds": run.info.get("train_seconds"),
        "seconds_per_epoch": run.info.get("seconds_per_epoch"),
        "eval": metrics,
    }


def _print_evaluation(metrics: dict) -> None:
    print(
        f"{metrics['set']} set: accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f} "
        f"on {metrics['size']:,} images (ECE {metrics['ece']:.4f})"
    )


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def _save_atomically(path: Path, write) -> None:
    """Write via ``write(temp_path)`` then rename: never a partial file at ``path``."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
