"""The flags of every ``digitlab`` command."""

from __future__ import annotations

import argparse
from pathlib import Path

from digitlab import __version__
from digitlab.cli import commands, experiments, exporting, predicting
from digitlab.cli import tune as tune_cli
from digitlab.cli.arguments import (
    _int_list,
    _name_list,
    _non_negative_int,
    _positive_int,
    _probability,
    defaults_help,
)
from digitlab.cli.output import EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line, exit 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command.  With ``command`` (the one about to run),
    the other commands' help texts are left plain: listing the model kinds
    imports their modules, time a quick ``digitlab predict`` need not spend."""
    global _plain_train_help
    _plain_train_help = command is not None and command != "train"
    parser = _Parser(
        prog="digitlab",
        description="Recognise handwritten digits: the MNIST tutorial, reproduced and extended.",
    )
    parser.add_argument("--version", action="version", version=f"digitlab {__version__}")
    subcommands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    p = subcommands.add_parser(
        "train", help="train a model (default: the tutorial) into a run folder"
    )
    _add_train_options(p)
    _add_data_dir(p)
    p.add_argument("--run-dir", type=Path, help="where to write the run (default: runs/DATE-MODEL)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    _add_output_options(p)
    p.set_defaults(handler=commands.cmd_train)

    p = subcommands.add_parser("evaluate", help="evaluate a saved run on a chosen set")
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument(
        "--set",
        choices=("validation", "test", "train"),
        help="images to evaluate on (default: the run's own evaluation set)",
    )
    _add_data_dir(p)
    _add_output_options(p)
    p.set_defaults(handler=commands.cmd_evaluate)

    p = subcommands.add_parser(
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
        "--no-reject",
        dest="reject",
        action="store_false",
        help="read every mark as a digit: no 'not a digit' answers (as in digitlab 0.1.0)",
    )
    p.add_argument(
        "--preview", type=Path, metavar="DIR", help="save the 28x28 images the model saw here"
    )
    _add_runtime(p)
    _add_data_dir(p)
    _add_output_options(p)
    p.set_defaults(handler=predicting.cmd_predict)

    p = subcommands.add_parser(
        "report",
        help="write the run's report.html: one self-contained file, figures included",
        description="Write RUN/report.html again (digitlab train writes it at the end of "
        "every run): scores and what they mean, the figures (click to enlarge), per-class "
        "table, config and versions, in one file that opens offline and prints.",
    )
    p.add_argument("run", type=Path, help="run folder")
    _add_output_options(p)
    p.set_defaults(handler=commands.cmd_report)

    p = subcommands.add_parser(
        "ensemble",
        help="average trained runs into one run folder that every command takes",
        description="Average the calibrated probabilities of Keras runs of the same classes "
        "and evaluation set (train them with --split official and different --seed) into "
        "one network, evaluate it once and save it as a run folder.",
    )
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders (2 or more)")
    p.add_argument("--run-dir", type=Path, help="where to write the ensemble's run folder")
    p.add_argument("--data-dir", type=Path, help="folder with the four IDX files")
    p.add_argument("--no-plots", action="store_true", help="skip the report plots")
    _add_output_options(p)
    p.set_defaults(handler=commands.cmd_ensemble)

    p = subcommands.add_parser("serve", help="serve the drawing page and the HTTP API for a run")
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=_non_negative_int, default=8000, help="port (default: 8000; 0: any free)"
    )
    p.add_argument(
        "--max-concurrency",
        type=_positive_int,
        help="threads of the server's process reading images: the explain=true requests, "
        "or all of them with --workers 0 (default: 1)",
    )
    p.add_argument(
        "--workers",
        type=_non_negative_int,
        help="processes reading images, each reading every waiting request in one model "
        "call (default: one per CPU core, at most 4; 0: none, the server's threads read them)",
    )
    p.add_argument(
        "--max-queue",
        type=_non_negative_int,
        default=16,
        help="predictions allowed to wait; beyond that requests get 503 (default: 16)",
    )
    p.add_argument(
        "--allowed-host",
        dest="allowed_hosts",
        action="append",
        default=[],
        metavar="NAME",
        help="a name the Host header may carry besides loopback names and the bound "
        "address (repeatable; '*': any)",
    )
    p.add_argument(
        "--allow-origin",
        dest="allow_origins",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin (http://app.example:3000) whose pages may POST to the API "
        "(repeatable; '*': any)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no access log")
    _add_runtime(p)
    p.set_defaults(handler=commands.cmd_serve)
    exporting.add_parser(subcommands)

    p = subcommands.add_parser(
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
    p.set_defaults(handler=experiments.cmd_compare)

    p = subcommands.add_parser(
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
    p.set_defaults(handler=experiments.cmd_sweep)
    tune_cli.add_parser(subcommands)

    data = subcommands.add_parser("data", help="get and inspect the dataset")
    data_commands = data.add_subparsers(
        title="data commands", metavar="COMMAND", parser_class=_Parser
    )
    p = data_commands.add_parser("fetch", help="download MNIST into the cache and verify it")
    _add_data_dir(p)
    _add_output_options(p)
    p.set_defaults(handler=commands.cmd_data_fetch)
    p = data_commands.add_parser("info", help="counts, shapes, class balance, checksums")
    _add_data_dir(p)
    _add_output_options(p)
    p.set_defaults(handler=commands.cmd_data_info)
    p = data_commands.add_parser("show", help="write a PNG grid of samples, or print one image")
    _add_data_dir(p)
    p.add_argument("--set", choices=("train", "test"), default="train")
    p.add_argument("--count", type=_positive_int, default=32, help="images in the grid")
    p.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG to write")
    p.add_argument("--index", type=int, help="print this one image in the terminal instead")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object (with --index: its pixels)"
    )
    p.set_defaults(handler=commands.cmd_data_show)
    data.set_defaults(handler=lambda args: data.print_help() or EXIT_USAGE)
    _record_flags(parser)
    return parser


def _record_flags(parser: argparse.ArgumentParser) -> None:
    """Give every command the map field → flag (``learning_rate`` →
    ``--learning-rate``, ``dropout_rate`` → ``--dropout``) that turns a library
    error naming a field into one naming the flag."""
    flags = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _record_flags(sub)
        elif action.option_strings:
            longest = max(action.option_strings, key=len)
            flags[action.dest] = longest
            flags.setdefault(longest.lstrip("-").replace("-", "_"), longest)
    parser.set_defaults(flags=flags)


_plain_train_help = False


def _model_kinds() -> list:
    if _plain_train_help:
        return []
    from digitlab import models

    return models.kinds()


def _add_train_options(p: argparse.ArgumentParser) -> None:
    from digitlab.config import ACTIVATIONS, ENGINES, LR_SCHEDULES, OPTIMIZERS, SPLITS, TrainConfig

    d = TrainConfig()
    # Options left out (None) take the model's defaults, then the tutorial's:
    # `--model cnn` alone trains the CNN its own way (the kind's defaults in
    # digitlab.models). See commands._train_config.
    families: dict[str, list[str]] = {}
    for kind in _model_kinds():
        families.setdefault(kind.family, []).append(kind.name + (" (slow)" if kind.slow else ""))
    listed = "; ".join(f"{family}: {', '.join(names)}" for family, names in families.items())
    p.add_argument(
        "--model",
        default=d.model,
        help=f"model name (default: {d.model}, the tutorial). {listed}",
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
        "--elastic",
        type=float,
        metavar="PIXELS",
        help="bend the augmented images by a random field of PIXELS " + _defaults_help("elastic"),
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
    p.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        help="fit a temperature on the validation images so probabilities mean what they "
        "say (default: on)",
    )
    p.add_argument(
        "--calibration-size",
        type=_positive_int,
        help="official split: training images held out to validate and calibrate on "
        + _defaults_help("calibration_size"),
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        help="keras (Keras on JAX) or torch: the same network, recipe and run folder, trained "
        "by PyTorch (about 4x faster for cnn with AMX; pip install 'digitlab[torch]'). "
        "Default: torch for cnn and cnn-deep where PyTorch is installed, else keras",
    )


def _defaults_help(field: str, tutorial: str | None = None) -> str:
    return defaults_help(field, _model_kinds(), tutorial)


def _add_experiment_options(p: argparse.ArgumentParser) -> None:
    from digitlab.config import SPLITS

    p.add_argument(
        "--split", choices=SPLITS, default="tutorial", help="tutorial (default) or official"
    )
    p.add_argument(
        "--epochs",
        type=_positive_int,
        help="epochs for Keras models (default: each model's own: mlp 20, "
        "cnn 30 on torch or 15 on keras, cnn-fast 1)",
    )


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        help="folder with the four IDX files (default: $DIGITLAB_DATA_DIR, the cache, or download)",
    )
    p.add_argument(
        "--dataset",
        metavar="NAME",
        help="a known dataset: mnist (default) or fashion-mnist; with --data-dir, the folder "
        "must hold it (default there: whatever the folder holds)",
    )


def _add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runtime",
        choices=("native", "onnx", "torch"),
        default="native",
        help="native (default): the run's own model; onnx: its export RUN/model.onnx on "
        "onnxruntime, without JAX or Keras (digitlab export RUN --format onnx first); torch: "
        "its Keras network on PyTorch, bfloat16 on CPUs with AMX (pip install 'digitlab[torch]')",
    )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
