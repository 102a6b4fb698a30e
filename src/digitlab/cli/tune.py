"""``digitlab tune``: a hyper-parameter search on Optuna (needs ``digitlab[tune]``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from digitlab.cli.arguments import _non_negative_int, _positive_int
from digitlab.cli.output import fail, print_json, progress_log


def add_parser(subcommands) -> argparse.ArgumentParser:
    """Add ``digitlab tune`` to ``subcommands`` (argparse's sub-parsers); return it."""
    p = subcommands.add_parser(
        "tune",
        help="search config fields (ranges and choices) with Optuna; resumable, shareable",
        description="Search hyper-parameters with Optuna's TPE, pruning trials that fall "
        "behind, judged on the validation images; the best trial's config is trained again "
        "and evaluated once on the test set. The study is stored in OUT/study.db (or "
        "--storage URL, which several processes or machines can share); running the same "
        "command again resumes it until it holds --trials finished trials.",
    )
    p.add_argument("--model", default="mlp", help="model name (default: mlp)")
    p.add_argument(
        "--space",
        dest="space",
        action="append",
        default=[],
        required=True,
        metavar="FIELD=SPEC",
        help="a field to search: LOW..HIGH[:log][:int] or choices A,B,C, e.g. "
        "hidden=32..512:log:int, learning_rate=1e-4..1e-1:log, optimizer=sgd,adam, "
        "layers=1..3; repeatable",
    )
    p.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="fix a config field for every trial, e.g. --set batch_size=256; repeatable",
    )
    p.add_argument(
        "--trials",
        type=_positive_int,
        default=20,
        help="finished trials the study should hold (default: 20; a rerun resumes up to it)",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="SQLAlchemy URL of the study's database, e.g. postgresql://user@host/db "
        "(default: sqlite:///OUT/study.db)",
    )
    p.add_argument("--study", metavar="NAME", help="study name in the storage (default: digitlab)")
    p.add_argument(
        "--out", type=Path, help="tune folder; reuse it to resume (default: runs/DATE-tune)"
    )
    p.add_argument("--epochs", type=_positive_int, help="epochs per trial (default: the model's)")
    p.add_argument(
        "--split",
        choices=("tutorial", "official"),
        default="tutorial",
        help="tutorial (default: 15,000 validation images) or official (5,000 held out)",
    )
    p.add_argument(
        "--seed", type=_non_negative_int, default=42, help="training and TPE seed (default: 42)"
    )
    p.add_argument("--no-pruning", action="store_true", help="train every trial to the end")
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="run --workers trial loops on this Ray cluster (host:port or auto; needs "
        "digitlab[cluster]; --storage must be reachable from every node)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="with --ray-address: Ray tasks asking the study for trials (default: 1)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="folder with the four IDX files (default: $DIGITLAB_DATA_DIR, the cache, or download)",
    )
    p.add_argument(
        "--dataset", metavar="NAME", help="a known dataset: mnist (default) or fashion-mnist"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.set_defaults(handler=cmd_tune)
    return p


def cmd_tune(args) -> int:
    from digitlab.config import TrainConfig
    from digitlab.errors import ConfigError
    from digitlab.experiments import parse_assignment
    from digitlab.experiments.tune import tune
    from digitlab.experiments.tune_space import parse_search_space
    from digitlab.runs import default_run_dir

    space = parse_search_space(args.space)
    fixed = {}
    for text in args.assignments:
        name, values = parse_assignment(text)
        if len(values) != 1:
            raise ConfigError(f"set: expected one value per field. Received: {text!r}")
        fixed[name] = values[0]
    given = {"split": args.split, "epochs": args.epochs, "seed": args.seed}
    if getattr(args, "dataset", None):
        given["dataset"] = args.dataset
    given = {name: value for name, value in given.items() if value is not None}
    base = TrainConfig.for_model(args.model, **{**given, **fixed})
    out = args.out if args.out is not None else default_run_dir("tune")
    result = tune(
        base,
        space,
        trials=args.trials,
        storage=args.storage,
        study_name=args.study,
        out=out,
        data_dir=args.data_dir,
        seed=args.seed,
        pruning=not args.no_pruning,
        workers=args.workers,
        ray_address=args.ray_address,
        log=progress_log(args),
    )
    if args.json:
        print_json(result.to_dict())
    else:
        print()
        print(result.table())
        fields = base.to_dict()
        best = result.best_config.to_dict()
        changed = ", ".join(f"{k}={best[k]!r}" for k in best if best[k] != fields[k]) or "base"
        print(
            f"\nbest: trial {result.best_trial} ({changed}): validation accuracy "
            f"{result.best_value:.4f}, test accuracy {result.test_accuracy:.4f}"
        )
        print(
            f"results in {result.out}, best run in {result.best_run} "
            f"(rerun with --out {result.out} to resume or extend)"
        )
    if result.failed:
        return fail(f"{len(result.failed)} trials failed (see above): {result.failed[0]}")
    return 0
