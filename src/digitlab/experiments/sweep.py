"""Run a sweep: one training trial per config, recorded so that it resumes.

Each finished trial is written atomically as ``trials/<key>.json`` in the
sweep folder, keyed by :func:`~digitlab.experiments.grid.trial_key`; running
the same sweep on the same folder again skips every trial recorded there and
runs the rest (including those that failed).
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from digitlab import data as data_module
from digitlab._files import write_text
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError
from digitlab.experiments import executors
from digitlab.experiments.grid import data_fingerprint, trial_key, varied_fields
from digitlab.experiments.records import trial_record
from digitlab.experiments.reports import summarize, write_sweep_results
from digitlab.experiments.text import cell, duration, plural

TRIALS_FOLDER = "trials"


@dataclass
class SweepResult:
    """What :func:`run_sweep` produced.

    ``trials``: one record per finished trial of the grid (including those
    skipped because an earlier run finished them); ``summary``: one row per
    grid point, mean and standard deviation over seeds; ``failed``: ``(config,
    message)`` for each trial that raised; ``skipped``: how many were
    already done.
    """

    out: Path
    trials: list[dict]
    summary: list[dict]
    varied: list[str]
    skipped: int = 0
    failed: list[tuple[TrainConfig, str]] = field(default_factory=list)


def run_sweep(
    configs: Sequence[TrainConfig],
    *,
    out,
    dataset: data_module.Dataset | None = None,
    data_dir=None,
    workers: int = 1,
    ray_address: str | None = None,
    keep_models: bool = False,
    log=None,
) -> SweepResult:
    """Run one training trial per config and write the sweep's results into ``out``.

    Trials already recorded in ``out/trials`` are skipped.  ``workers`` > 1
    runs trials in that many fresh local processes (spawned, so each imports
    digitlab and its Keras backend anew); ``ray_address`` (``"auto"`` or
    ``host:port``) runs them as Ray tasks on that cluster instead, with the
    dataset put in Ray's object store once.  ``keep_models`` keeps each
    trial's run folder (model, no plots) under ``out/runs/<key>``; on Ray
    those are written on the worker's machine.  A trial that raises is
    reported in ``failed`` and the others go on.  ``log`` (default stdout)
    gets one progress line per trial.
    """
    log = log or sys.stdout
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers: expected a positive integer. Received: {workers!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: expected a folder for the sweep. {out} is a file")
    configs = list(dict.fromkeys(configs))  # a repeated grid point is one trial
    varied = varied_fields(configs)
    if dataset is None:
        dataset = data_module.load_dataset(data_dir, progress=False)
    fingerprint = data_fingerprint(dataset)
    keys = [trial_key(config, fingerprint) for config in configs]
    trials_dir = out / TRIALS_FOLDER
    trials_dir.mkdir(parents=True, exist_ok=True)
    done = finished_trials(trials_dir, keys)
    pending = [(key, config) for key, config in zip(keys, configs, strict=True) if key not in done]
    skipped = len(done)
    print(
        f"sweep: {plural(len(configs), 'trial')} into {out}"
        + (f"; skipping {skipped} already finished" if skipped else "")
        + (
            f"; running {len(pending)} {executors.where(workers, ray_address)}"
            if pending
            else "; nothing left to run"
        ),
        file=log,
        flush=True,
    )

    failed: list[tuple[TrainConfig, str]] = []
    progress = _Progress(total=len(configs), finished=skipped, log=log)

    def finished(key: str, config: TrainConfig, record: dict | None, error: str | None):
        label = _describe(config, varied)
        if error is not None:
            failed.append((config, error))
            progress.report(f"{label}: FAILED: {error}")
            return
        record = {"key": key, "data_fingerprint": fingerprint, **record}
        write_text(trials_dir / f"{key}.json", json.dumps(record, indent=2) + "\n")
        done[key] = record
        progress.report(f"{label}: acc {record['accuracy']:.4f} in {_timing(record)}")

    if pending:
        executors.run_trials(
            execute_trial,
            pending,
            dataset,
            keep_root=out / "runs" if keep_models else None,
            finished=finished,
            workers=workers,
            ray_address=ray_address,
        )

    trials = [done[key] for key in keys if key in done]
    summary = summarize(trials, varied)
    write_sweep_results(out, trials, summary, varied)
    return SweepResult(
        out=out, trials=trials, summary=summary, varied=varied, skipped=skipped, failed=failed
    )


def execute_trial(config: TrainConfig, dataset: data_module.Dataset, *, keep_dir=None) -> dict:
    """Train one trial quietly and return its record (metrics, size, timings).

    The run folder goes to a temporary folder that is deleted afterwards, or
    to ``keep_dir`` (replacing what an interrupted attempt left there).
    Runs the same in this process, a pool worker or a Ray task.
    """
    from digitlab.training import train

    with tempfile.TemporaryDirectory(prefix="digitlab-trial-") as tmp:
        if keep_dir is not None:
            run_dir = Path(keep_dir)
            if run_dir.exists():
                shutil.rmtree(run_dir)
        else:
            run_dir = Path(tmp) / "run"
        run = train(
            config, dataset, run_dir=run_dir, verbose=0, plots_enabled=False, log=io.StringIO()
        )
        return trial_record(run, run_dir=run_dir if keep_dir is not None else None)


def finished_trials(trials_dir: Path, keys: Sequence[str]) -> dict[str, dict]:
    """The records of ``keys`` already in ``trials_dir``: what a resumed sweep skips.
    An unreadable or partial record does not count (that trial runs again)."""
    done = {}
    for key in keys:
        try:
            record = json.loads((trials_dir / f"{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if isinstance(record, dict) and "accuracy" in record:
            done[key] = record
    return done


def _timing(record: dict) -> str:
    """``1.2 s`` of training, and the compilation beside it when it was measured."""
    text = f"{record['train_seconds']:.1f} s"
    if record.get("compile_seconds") is not None:
        text += f" (+{record['compile_seconds']:.1f} s compiling)"
    return text


def _describe(config: TrainConfig, varied: Sequence[str]) -> str:
    data = config.to_dict()
    return " ".join(f"{name}={cell(data[name])}" for name in (list(varied) or ["model"]))


class _Progress:
    """``[done/total]`` lines with an estimate of the time left: wall-clock time
    per trial so far (so parallel trials count as they should)."""

    def __init__(self, *, total: int, finished: int, log):
        self.total, self.finished, self.log = total, finished, log
        self.ran = 0
        self.start = time.perf_counter()

    def report(self, text: str) -> None:
        self.finished += 1
        self.ran += 1
        left = self.total - self.finished
        eta = ""
        if left:
            per_trial = (time.perf_counter() - self.start) / self.ran
            eta = f" (~{duration(per_trial * left)} left)"
        print(f"[{self.finished}/{self.total}] {text}{eta}", file=self.log, flush=True)
