"""Run a sweep: one training trial per config, recorded so that it resumes.

Each finished trial is written atomically as ``trials/<key>.json`` in the
sweep folder, keyed by :func:`~digitlab.experiments.grid.trial_key`; running
the same sweep on the same folder again skips every trial recorded there and
runs the rest (including those that failed).
"""

from __future__ import annotations

import io
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from digitlab import data as data_module
from digitlab._files import clean_stale, one_line, write_text
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError
from digitlab.experiments import executors
from digitlab.experiments.grid import data_fingerprint, trial_key, varied_fields
from digitlab.experiments.records import trial_record
from digitlab.experiments.reports import RESULTS_JSON, summarize, write_sweep_results
from digitlab.experiments.text import cell, duration, plural

TRIALS_FOLDER = "trials"
#: A trial record is a few kilobytes; anything far larger is not one.
MAX_RECORD_BYTES = 16 * 2**20
#: Fields of a trial record that the summary and tables compute with.
REQUIRED_NUMBERS = ("accuracy", "loss", "ece", "train_seconds", "params")
OPTIONAL_NUMBERS = ("compile_seconds", "predict_seconds_per_10k", "macro_f1", "seconds_per_epoch")


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
    out = check_sweep_folder(out)
    configs = list(dict.fromkeys(configs))  # a repeated grid point is one trial
    varied = varied_fields(configs)
    if dataset is None:
        dataset = data_module.load_dataset(data_dir, progress=False)
    fingerprint = data_fingerprint(dataset)
    keys = [trial_key(config, fingerprint) for config in configs]
    trials_dir = out / TRIALS_FOLDER
    trials_dir.mkdir(parents=True, exist_ok=True)
    for folder in (out, trials_dir):  # what a killed sweep left half-written
        clean_stale(folder)
    bad: list[str] = []
    done = finished_trials(trials_dir, keys, fingerprint=fingerprint, bad=bad)
    for problem in bad:
        print(f"sweep: {problem}; running that trial again", file=log, flush=True)
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


def check_sweep_folder(out) -> Path:
    """``out`` if a sweep may write there: a new or empty folder, or one that
    is a digitlab sweep (its ``trials/`` folder, or its ``results.json``);
    anything else holds someone's files, which a sweep's ``results.csv`` and
    ``summary.csv`` would replace."""
    out = Path(out)
    if out.is_symlink() and not out.is_dir():
        raise ConfigError(f"out: expected a folder for the sweep. {out} is a broken symbolic link")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: expected a folder for the sweep. {out} is a file")
    if not out.exists() or not any(out.iterdir()):
        return out
    if (out / TRIALS_FOLDER).is_dir() and not (out / TRIALS_FOLDER).is_symlink():
        return out
    try:
        results = json.loads((out / RESULTS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        results = None
    if isinstance(results, dict) and {"varied", "trials", "summary"} <= set(results):
        return out
    raise ConfigError(
        f"out: expected a new or empty folder, or a sweep folder digitlab wrote. {out} holds "
        "other files, which the sweep's results would replace"
    )


def finished_trials(
    trials_dir: Path, keys: Sequence[str], *, fingerprint: str | None = None, bad=None
) -> dict[str, dict]:
    """The records of ``keys`` already in ``trials_dir``: what a resumed sweep skips.

    A record counts only if it is this trial's: its config rebuilds, the key
    recomputed from that config and its data fingerprint is its file's name,
    the fingerprint is ``fingerprint`` (when given) and its figures are
    numbers.  Anything else (unreadable, partial, tampered, another trial's)
    does not count and that trial runs again; a one-line reason per existing
    file is appended to ``bad`` (a list) when given.
    """
    done = {}
    for key in keys:
        file = trials_dir / f"{key}.json"
        if not file.exists() and not file.is_symlink():
            continue
        problem = None
        try:
            if not file.is_file() or file.stat().st_size > MAX_RECORD_BYTES:
                raise ValueError("expected a JSON trial record (a small regular file)")
            record = json.loads(file.read_text(encoding="utf-8"))
            problem = record_problem(record, key, fingerprint)
        except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
            problem = one_line(exc)
        if problem is None:
            done[key] = record
        elif bad is not None:
            bad.append(f"{file}: {problem}")
    return done


def record_problem(record, key: str, fingerprint: str | None) -> str | None:
    """Why ``record`` is not trial ``key``'s finished record, or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object. Found {type(record).__name__}"
    config = record.get("config")
    if not isinstance(config, dict):
        return "expected the trial's config (a JSON object). Found " + (
            "none" if config is None else type(config).__name__
        )
    try:
        config = TrainConfig.from_dict(config)
    except (ConfigError, TypeError) as exc:
        return f"expected a valid config. {one_line(exc)}"
    recorded = record.get("data_fingerprint")
    if not isinstance(recorded, str):
        return "expected the data fingerprint it was trained on. Found none"
    if fingerprint is not None and recorded != fingerprint:
        return "expected a trial on this sweep's data. It was trained on other data"
    if trial_key(config, recorded) != key or record.get("key", key) != key:
        return "expected this trial's record. It holds another trial's (its key differs)"
    for name in REQUIRED_NUMBERS:
        value = record.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected {name} to be a number. Found {value!r:.40}"
        if not math.isfinite(value):
            return f"expected {name} to be a finite number. Found {value!r}"
    for name in OPTIONAL_NUMBERS:
        value = record.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"expected {name} to be a number or null. Found {value!r:.40}"
    return None


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
