"""Compare models: train each on the same data, each into its own run folder,
and write ``compare.csv``, ``compare.json`` and ``compare.png`` beside them."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from digitlab import data as data_module
from digitlab import runs
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError
from digitlab.experiments._models import default_models, model_names
from digitlab.experiments.records import comparison_row
from digitlab.experiments.reports import format_compare_table, write_comparison


@dataclass
class Comparison:
    """What :func:`compare` produced: one row per model and the output folder."""

    out: Path
    rows: list[dict]

    def table(self) -> str:
        """The comparison as a markdown table."""
        return format_compare_table(self.rows)


def compare(
    models: Sequence[str] | None = None,
    *,
    settings: dict | None = None,
    dataset: data_module.Dataset | None = None,
    data_dir=None,
    out=None,
    verbose: int = 0,
    plots_enabled: bool = True,
    log=None,
) -> Comparison:
    """Train each of ``models`` on the same data and compare them.

    ``models`` defaults to :func:`default_models` (every model but the slow
    ``svm``).  Each model trains its own way (:meth:`TrainConfig.for_model`:
    the CNN with Adam for 15 epochs, the tutorial network with SGD for 20…)
    with ``settings`` (TrainConfig fields such as ``split``, ``seed``,
    ``epochs``) applied over every model's defaults; the baselines ignore the
    Keras-only ones.  ``dataset`` defaults to
    :func:`digitlab.data.load_dataset` on ``data_dir``, loaded once.  ``out``
    (default: a new dated folder under ``runs/``) must be new or empty; each
    model's run folder goes inside it, named after the model.  ``log``
    (default stdout) receives one line per model.
    """
    settings = dict(settings or {})
    log = log or sys.stdout
    names = _check_model_list(default_models() if models is None else models)
    known = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "model"]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(
            f"settings: expected fields of {', '.join(known)}. Received: {', '.join(unknown)}"
        )
    configs = {name: TrainConfig.for_model(name, **settings) for name in names}
    out = runs.check_run_dir(out if out is not None else runs.default_run_dir("compare"))
    if dataset is None:
        dataset = data_module.load_dataset(data_dir, progress=verbose > 0)
    from digitlab.training import train

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for number, name in enumerate(names, start=1):
        print(f"[{number}/{len(names)}] training {name}…", file=log, flush=True)
        run = train(
            configs[name],
            dataset,
            run_dir=out / name,
            verbose=verbose,
            plots_enabled=plots_enabled,
            log=log,
        )
        row = comparison_row(run, out=out)
        rows.append(row)
        compiling = row["compile_seconds"]
        print(
            f"[{number}/{len(names)}] {name}: accuracy {row['accuracy']:.4f}, "
            f"trained in {row['train_seconds']:.1f} s"
            + (f" (+{compiling:.1f} s compiling)" if compiling is not None else ""),
            file=log,
            flush=True,
        )
    summary = {
        "created": runs.now(),
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
        "configs": {name: config.to_dict() for name, config in configs.items()},
        "data": {
            "name": dataset.name,
            "source": dataset.source,
            "sha256": dataset.sha256,
            "eval_set": rows[0]["eval_set"],
            "eval_size": rows[0]["eval_size"],
        },
        "versions": runs.versions(),
        "rows": rows,
    }
    write_comparison(out, summary, rows)
    return Comparison(out=out, rows=rows)


def _check_model_list(models: Iterable[str]) -> list[str]:
    names = [m.strip() for m in models if m.strip()]
    if not names:
        raise ConfigError("models: expected at least one model name. Received none")
    valid = model_names()
    unknown = [m for m in names if m not in valid]
    if unknown:
        raise ConfigError(
            f"models: expected names from {', '.join(valid)}. Received: {', '.join(unknown)}"
        )
    duplicates = sorted({m for m in names if names.count(m) > 1})
    if duplicates:
        raise ConfigError(
            f"models: expected each model once. Received {', '.join(duplicates)} twice"
        )
    return names
