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

    p = commands.add_parser("predict", help="predict one image of the evaluation set")
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument("--index", type=int, required=True, help="image number in the set")
    p.add_argument(
        "--set",
        choices=("validation", "test", "train"),
        help="set to take the image from (default: the run's evaluation set)",
    )
    _add_data_dir(p)
    _add_output_options(p)
    p.set_defaults(handler=cmd_predict)

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
    from digitlab.config import ACTIVATIONS, OPTIMIZERS, SPLITS, TrainConfig

    d = TrainConfig()
    p.add_argument("--model", default=d.model, help=f"model name (default: {d.model})")
    p.add_argument(
        "--hidden",
        type=_int_list,
        default=d.hidden,
        help="hidden layer sizes, comma-separated (default: 128)",
    )
    p.add_argument("--activation", choices=ACTIVATIONS, default=d.activation)
    p.add_argument(
        "--dropout",
        dest="dropout_rate",
        type=float,
        default=d.dropout_rate,
        help="dropout rate after each hidden layer (default: 0)",
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument(
        "--learning-rate",
        type=float,
        default=d.learning_rate,
        help="default: the optimizer's own (SGD: 0.01)",
    )
    p.add_argument("--epochs", type=_positive_int, default=d.epochs)
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
    p.add_argument(
        "--split",
        choices=SPLITS,
        default=d.split,
        help="tutorial: 45,000/15,000 of the training set; official: 60,000/10,000 test",
    )
    p.add_argument("--validation-size", type=_positive_int, default=d.validation_size)
    p.add_argument("--seed", type=_non_negative_int, default=d.seed)


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


# --------------------------------------------------------------------------- commands


def _train_config(args):
    from digitlab.config import TrainConfig

    return TrainConfig(
        model=args.model,
        hidden=args.hidden,
        activation=args.activation,
        dropout_rate=args.dropout_rate,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        epochs=args.epochs,
        batch_size=args.batch_size,
        split=args.split,
        validation_size=args.validation_size,
        seed=args.seed,
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


def cmd_data_fetch(args) -> int:
    from digitlab import fetch

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
