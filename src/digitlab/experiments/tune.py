"""Hyper-parameter search on Optuna: ranges and choices over any config field.

A study lives in an Optuna storage: by default ``OUT/study.db`` (SQLite), or
any SQLAlchemy URL, which lets several processes or machines work on one
study.  ``trials`` is the study's total: running :func:`tune` again on the
same study (same out folder, or same storage and study name) goes on until
the study holds that many finished trials, so an interrupted search resumes by
construction.  Trials are chosen by TPE and judged on the validation images
(the tutorial split's held-out 15,000); a trial whose ``val_accuracy`` falls
below the median of earlier trials at the same epoch is pruned.  The test set
is evaluated once, at the end, for the best trial only: its config is trained
again (same seed) into ``OUT/best-trial-N`` and scored on the test images.
"""

from __future__ import annotations

import dataclasses
import io
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from digitlab import data as data_module
from digitlab._files import one_line
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError, DigitlabError
from digitlab.experiments._models import check_model_name
from digitlab.experiments.grid import data_fingerprint
from digitlab.experiments.records import trial_record
from digitlab.experiments.text import cell, duration
from digitlab.experiments.tune_outputs import (
    check_tune_folder,
    format_tune_table,
    trial_row,
    write_marker,
    write_results,
)
from digitlab.experiments.tune_space import Param, parse_search_space, suggest_overrides
from digitlab.experiments.tune_study import (
    DEFAULT_STUDY,
    check_identity,
    import_optuna,
    load_study,
    make_pruner,
    make_sampler,
    open_storage,
    redact,
)


@dataclass
class TuneResult:
    """What :func:`tune` found: the best trial's config, validation accuracy
    (``best_value``) and test accuracy, and one row per trial of the study."""

    out: Path
    study_name: str
    storage: str
    best_config: TrainConfig
    best_value: float
    best_trial: int
    test_accuracy: float
    best_run: Path
    rows: list[dict]
    space: list[str]
    ran: int = 0
    failed: list[str] = field(default_factory=list)

    def table(self) -> str:
        return format_tune_table(self.rows, [p.partition("=")[0].strip() for p in self.space])

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "study": self.study_name,
            "storage": self.storage,
            "space": list(self.space),
            "best_trial": self.best_trial,
            "best_value": self.best_value,
            "best_config": self.best_config.to_dict(),
            "test_accuracy": self.test_accuracy,
            "best_run": str(self.best_run),
            "ran": self.ran,
            "failed": list(self.failed),
            "trials": self.rows,
        }


def tune(
    base_config: TrainConfig | None = None,
    space: Sequence[str] | Sequence[Param] = (),
    *,
    trials: int = 20,
    storage: str | None = None,
    study_name: str | None = None,
    out,
    dataset: data_module.Dataset | None = None,
    data_dir=None,
    seed: int | None = None,
    pruning: bool = True,
    workers: int = 1,
    ray_address: str | None = None,
    log=None,
) -> TuneResult:
    """Search ``space`` around ``base_config`` until the study holds ``trials``
    finished trials; write the results into ``out`` and return them.

    ``storage``: an SQLAlchemy URL (default ``sqlite:///OUT/study.db``);
    ``study_name`` (default ``digitlab``) names the study in it.  ``seed``
    (default ``base_config.seed``) seeds TPE.  ``pruning`` stops a trial
    whose validation accuracy is below the median of the trials before it at
    the same epoch.  ``ray_address`` (``auto`` or ``host:port``, needs
    ``digitlab[cluster]``) runs ``workers`` Ray tasks, each asking the study
    for trials until it is done: ``storage`` must then be reachable from every
    node (a database server; the default SQLite file only on one machine).
    ``log`` (default stdout) gets one line per trial.
    """
    optuna = import_optuna()
    log = log or sys.stdout
    base = base_config or TrainConfig()
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"trials: expected a positive integer. Received: {trials!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers: expected a positive integer. Received: {workers!r}")
    if workers > 1 and not ray_address:
        raise ConfigError(
            f"workers: expected 1 without ray_address (to search in several local processes, "
            f"start several on one storage or out folder). Received: {workers}"
        )
    seed = base.seed if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer. Received: {seed!r}")
    space = [space] if isinstance(space, str) else list(space)
    params = parse_search_space([p.spec if isinstance(p, Param) else p for p in space])
    check_model_name(base.model)
    if base.split == "official" and not base.calibrate:
        raise ConfigError(
            "base_config: expected a split with validation images (tutorial, or official with "
            "calibrate). Received: split='official', calibrate=False, which judges on the test set"
        )
    study_name = DEFAULT_STUDY if study_name is None else study_name
    if not isinstance(study_name, str) or not study_name.strip():
        raise ConfigError(f"study_name: expected a non-empty name. Received: {study_name!r}")
    out = check_tune_folder(out)
    if dataset is None:
        dataset = data_module.load_dataset(data_dir, dataset=base.dataset, progress=False)
    fingerprint = data_fingerprint(dataset)
    out.mkdir(parents=True, exist_ok=True)
    url = storage if storage is not None else f"sqlite:///{(out / 'study.db').resolve()}"
    shown = redact(url)
    write_marker(out, study_name, shown)
    rdb = open_storage(optuna, url, shown)
    identity = {
        "version": 1,
        "base": base.to_dict(),
        "space": [p.spec for p in params],
        "data": fingerprint,
    }
    study = load_study(optuna, rdb, study_name, shown, seed, pruning)
    check_identity(study, identity, study_name)

    states = optuna.trial.TrialState
    finished_states = (states.COMPLETE, states.PRUNED, states.FAIL)
    done = len(study.get_trials(deepcopy=False, states=finished_states))
    print(
        f"tune: study {study_name!r} in {shown}: {done} of {trials} trials finished"
        + ("; nothing left to run" if done >= trials else f"; results into {out}"),
        file=log,
        flush=True,
    )
    if done >= trials:
        ran, failed = 0, []
    elif ray_address:
        ran, failed = _run_on_ray(
            ray_address,
            workers,
            url,
            study_name,
            params,
            base,
            dataset,
            trials,
            seed,
            pruning,
            log,
        )
    else:
        ran, failed = _work(study, params, base, dataset, trials, seed, pruning, log)

    all_trials = study.get_trials(deepcopy=False)
    rows = [trial_row(t, params) for t in all_trials]
    complete = [t for t in all_trials if t.state == states.COMPLETE and t.value is not None]
    if not complete:
        write_results(out, None, rows, params, study_name, shown)
        raise ConfigError(
            f"tune: expected at least one finished trial in study {study_name!r}. "
            f"Found none ({len(all_trials)} pruned or failed); see the lines above"
        )
    best = max(complete, key=lambda t: (t.value, -t.number))
    best_config = TrainConfig.from_dict(best.user_attrs["config"])
    best_run, test = _best_on_test(out, best.number, best_config, dataset, log)
    result = TuneResult(
        out=out,
        study_name=study_name,
        storage=shown,
        best_config=best_config,
        best_value=float(best.value),
        best_trial=best.number,
        test_accuracy=test,
        best_run=best_run,
        rows=rows,
        space=[p.spec for p in params],
        ran=ran,
        failed=failed,
    )
    write_results(out, result, rows, params, study_name, shown)
    return result


def _work(study, params, base, dataset, trials: int, seed: int, pruning: bool, log):
    """Ask, train and tell until ``study`` holds ``trials`` finished trials;
    return how many this worker ran and its failures."""
    optuna = import_optuna()
    states = optuna.trial.TrialState
    finished_states = (states.COMPLETE, states.PRUNED, states.FAIL)
    ran, failed = 0, []
    start = time.perf_counter()
    while True:
        done = len(study.get_trials(deepcopy=False, states=finished_states))
        if done >= trials:
            break
        count = len(study.get_trials(deepcopy=False))
        study.sampler = make_sampler(optuna, seed * 1_000_003 + count)
        trial = study.ask()
        label = f"[{done + 1}/{trials}] trial {trial.number}"
        try:
            overrides = suggest_overrides(trial, params, base)
            config = dataclasses.replace(base, **overrides)
            check_model_name(config.model)
            label += " " + _describe(overrides)
            trial.set_user_attr("config", config.to_dict())
            value, record = _objective(optuna, trial, config, dataset, pruning)
        except optuna.TrialPruned as exc:
            study.tell(trial, state=states.PRUNED)
            print(
                f"{label}: pruned {exc}{_eta(start, ran + 1, trials - done - 1)}",
                file=log,
                flush=True,
            )
        except (DigitlabError, ArithmeticError, RuntimeError, ValueError, MemoryError) as exc:
            study.tell(trial, state=states.FAIL)
            failed.append(f"trial {trial.number}: {one_line(exc)}")
            print(f"{label}: FAILED: {one_line(exc)}", file=log, flush=True)
        except BaseException:
            study.tell(trial, state=states.FAIL)
            raise
        else:
            trial.set_user_attr("record", record)
            study.tell(trial, value)
            print(
                f"{label}: val acc {value:.4f} in {record['train_seconds']:.1f} s"
                f"{_eta(start, ran + 1, trials - done - 1)}",
                file=log,
                flush=True,
            )
        ran += 1

    return ran, failed


def _ray_worker(config, dataset, *, keep_dir=None, job: dict) -> dict:
    """One Ray task: a :func:`_work` loop on the shared storage."""
    optuna = import_optuna()
    storage = open_storage(optuna, job["url"], redact(job["url"]))
    study = optuna.load_study(
        study_name=job["study"], storage=storage, pruner=make_pruner(optuna, job["pruning"])
    )
    params = parse_search_space(job["space"])
    log = io.StringIO()
    ran, failed = _work(
        study, params, config, dataset, job["trials"], job["seed"], job["pruning"], log
    )
    return {"ran": ran, "failed": failed, "log": log.getvalue()}


def _run_on_ray(
    address, workers, url, study_name, params, base, dataset, trials, seed, pruning, log
):
    """``workers`` Ray tasks, each a :func:`_work` loop on the study at ``url``
    (which every node must reach: a database server, or SQLite on one machine)."""
    from digitlab.experiments import executors

    results: list[dict] = []
    failed: list[str] = []
    print(
        f"tune: {workers} workers {executors.where(1, address)}",
        file=log,
        flush=True,
    )

    def finished(key, config, record, error):
        if error is not None:
            failed.append(f"{key}: {error}")
            print(f"tune: {key} FAILED: {error}", file=log, flush=True)
            return
        results.append(record)
        failed.extend(record["failed"])
        log.write(record["log"])
        log.flush()

    job = {
        "url": url,
        "study": study_name,
        "space": [p.spec for p in params],
        "trials": trials,
        "pruning": pruning,
    }
    pending = [(f"worker {i}", base) for i in range(workers)]
    # Each worker's TPE seed differs, so that they do not propose the same points.
    executors._run_on_ray(
        address,
        _RayJob(job, seed),
        pending,
        dataset,
        None,
        finished,
    )
    return sum(r["ran"] for r in results), failed


class _RayJob:
    """The task function :func:`executors._run_on_ray` sends to each node."""

    def __init__(self, job: dict, seed: int):
        self.job, self.seed = job, seed

    def __call__(self, config, dataset, *, keep_dir=None) -> dict:
        import os

        job = {**self.job, "seed": self.seed + os.getpid()}
        return _ray_worker(config, dataset, keep_dir=keep_dir, job=job)


def _objective(optuna, trial, config: TrainConfig, dataset, pruning: bool):
    """Train ``config``; its validation accuracy and trial record."""
    from digitlab.training import train

    callbacks = [_pruning_callback(optuna, trial)] if pruning else []
    with tempfile.TemporaryDirectory(prefix="digitlab-tune-") as tmp:
        run = train(
            config,
            dataset,
            run_dir=Path(tmp) / "run",
            verbose=0,
            plots_enabled=False,
            callbacks=callbacks,
            log=io.StringIO(),
        )
    if run.metrics.set != "validation":
        raise ConfigError(
            f"tune: expected trials judged on validation images. This one was on {run.metrics.set}"
        )
    record = trial_record(run)
    record.pop("run_dir", None)
    return float(run.metrics.accuracy), record


def _pruning_callback(optuna, trial):
    """A Keras callback that reports ``val_accuracy`` each epoch to ``trial``
    and raises :class:`optuna.TrialPruned` when the pruner says so (what
    optuna-integration's ``KerasPruningCallback`` does, without that package)."""
    import keras

    class PruningCallback(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get("val_accuracy")
            if value is None:
                return
            trial.report(float(value), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"after epoch {epoch + 1} (val acc {float(value):.4f})")

    return PruningCallback()


def _best_on_test(out: Path, number: int, config: TrainConfig, dataset, log):
    """Train the best trial's config again into ``out/best-trial-N`` (or reuse
    that run when an earlier call wrote it) and score it once on the test set."""
    from digitlab.evaluation import evaluate
    from digitlab.runs import load_run
    from digitlab.training import train

    target = out / f"best-trial-{number}"
    run = None
    if target.exists() and any(target.iterdir()):
        run = load_run(target)
        if run.config != config:
            raise ConfigError(
                f"out: expected {target} to hold trial {number}'s run. It holds another config"
            )
    else:
        print(f"tune: training trial {number}'s config again into {target}", file=log, flush=True)
        try:
            run = train(config, dataset, run_dir=target, verbose=0, log=io.StringIO())
        except (DigitlabError, OSError):
            if not (target.is_dir() and any(target.iterdir())):
                raise
            run = load_run(target)  # another process sharing this folder wrote it first
    x, labels = data_module.eval_arrays(
        dataset, "test", seed=config.seed, validation_size=config.validation_size
    )
    metrics = evaluate(run, x, labels, set_name="test", class_names=run.class_names)
    return target, float(metrics.accuracy)


def _describe(overrides: dict) -> str:
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={cell(v)}" for k, v in overrides.items()
    )


def _eta(start: float, ran: int, left: int) -> str:
    if left <= 0:
        return ""
    return f" (~{duration((time.perf_counter() - start) / ran * left)} left)"
