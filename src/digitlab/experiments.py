"""Experiments: compare models on the same data, and sweep a grid of configs.

:func:`compare` trains several models (Keras or scikit-learn baselines) on one
loaded dataset, each into its own run folder, and writes ``compare.csv``,
``compare.json`` and ``compare.png`` beside them.

:func:`run_sweep` trains one trial per config of a grid (built with
:func:`build_grid`, each config ``dataclasses.replace(base, **overrides)``)
and answers the tutorial's questions (more neurons? more layers?) with
mean ± standard deviation over seeds.  Each finished trial is recorded as
``trials/<key>.json`` in the sweep folder, written atomically, keyed by a
stable hash of its config and of the data (:func:`trial_key`), so re-running
the same sweep on the same folder skips what is done.  Trials run in this
process, in a pool of fresh local processes, or as tasks on a Ray cluster;
a seeded CPU trial computes the same numbers wherever it runs.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import hashlib
import io
import itertools
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitlab import data as data_module
from digitlab import runs
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError, DigitlabError

COMPARE_CSV = "compare.csv"
COMPARE_JSON = "compare.json"
COMPARE_PNG = "compare.png"
TRIALS_FOLDER = "trials"
RESULTS_CSV = "results.csv"
SUMMARY_CSV = "summary.csv"
RESULTS_JSON = "results.json"
#: Trial record fields that measure time or place, not what was computed.
RUN_DEPENDENT_FIELDS = frozenset(
    {
        "train_seconds",
        "seconds_per_epoch",
        "predict_seconds_per_10k",
        "finished",
        "host",
        "pid",
        "run_dir",
        "model_bytes",  # archives embed timestamps, so their size can vary by a byte or so
    }
)

# --------------------------------------------------------------------------- compare


@dataclass
class Comparison:
    """What :func:`compare` produced: one row per model and the output folder."""

    out: Path
    rows: list[dict]

    def table(self) -> str:
        """The comparison as a markdown table."""
        return format_compare_table(self.rows)


def compare(
    models: Sequence[str],
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

    Each model trains its own way (:meth:`TrainConfig.for_model`: the CNN with
    Adam for 12 epochs, the tutorial network with SGD for 20…) with
    ``settings`` (TrainConfig fields such as ``split``, ``seed``, ``epochs``)
    applied over every model's defaults; the baselines ignore the Keras-only
    ones.  ``dataset`` defaults to
    :func:`digitlab.data.load_dataset` on ``data_dir``, loaded once.  ``out``
    (default: a new dated folder under ``runs/``) must be new or empty; each
    model's run folder goes inside it, named after the model.  ``log``
    (default stdout) receives one line per model.
    """
    settings = dict(settings or {})
    log = log or sys.stdout
    names = _check_model_list(models)
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
        config = configs[name]
        print(f"[{number}/{len(names)}] training {name}…", file=log, flush=True)
        run = train(
            config,
            dataset,
            run_dir=out / name,
            verbose=verbose,
            plots_enabled=plots_enabled,
            log=log,
        )
        row = comparison_row(run, out=out)
        rows.append(row)
        print(
            f"[{number}/{len(names)}] {name}: accuracy {row['accuracy']:.4f}, "
            f"trained in {row['train_seconds']:.1f} s",
            file=log,
            flush=True,
        )
    summary = {
        "created": _now(),
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
    _write_text(out / COMPARE_JSON, json.dumps(summary, indent=2) + "\n")
    _write_text(out / COMPARE_CSV, _csv_text(rows))
    _save_png(out / COMPARE_PNG, plot_comparison(rows))
    return Comparison(out=out, rows=rows)


def _check_model_list(models: Iterable[str]) -> list[str]:
    from digitlab.training import model_names

    names = [m.strip() for m in models if m.strip()]
    if not names:
        raise ConfigError("--models: expected at least one model name. Received none")
    valid = model_names()
    unknown = [m for m in names if m not in valid]
    if unknown:
        raise ConfigError(
            f"--models: expected names from {', '.join(valid)}. Received: {', '.join(unknown)}"
        )
    duplicates = sorted({m for m in names if names.count(m) > 1})
    if duplicates:
        raise ConfigError(
            f"--models: expected each model once. Received {', '.join(duplicates)} twice"
        )
    return names


def comparison_row(run, *, out=None) -> dict:
    """One row of a comparison for a trained or loaded run: its size, timings
    and scores; ``run_dir`` relative to ``out`` when given."""
    return {
        "model": run.config.model,
        **_sizes_and_timings(run.info),
        **_scores(run.metrics),
        "run_dir": str(Path(run.path).relative_to(out) if out is not None else run.path),
    }


def _sizes_and_timings(info: dict) -> dict:
    return {
        "params": int(info["params"]),
        "size_unit": info.get("size_unit", "parameters"),
        "model_bytes": info.get("model_bytes"),
        "train_seconds": float(info["train_seconds"]),
        "predict_seconds_per_10k": float(info["predict_seconds_per_10k"]),
    }


def _scores(metrics: dict) -> dict:
    return {
        "accuracy": float(metrics["accuracy"]),
        "loss": float(metrics["loss"]),
        "ece": float(metrics["ece"]),
        "macro_f1": float(metrics["macro_f1"]),
        "eval_set": metrics["set"],
        "eval_size": int(metrics["size"]),
    }


def format_compare_table(rows: Sequence[dict]) -> str:
    """Rows of :func:`compare` as a markdown table (model, size, timings, scores)."""
    header = (
        "| model | params / size | model file | train s | predict s/10k | accuracy | loss | ECE |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        size = f"{row['params']:,}"
        if row.get("size_unit", "parameters") != "parameters":
            size += f" {row['size_unit']}"
        lines.append(
            f"| {row['model']} | {size} | {_megabytes(row.get('model_bytes'))} "
            f"| {row['train_seconds']:.1f} | {row['predict_seconds_per_10k']:.2f} "
            f"| {row['accuracy']:.4f} | {row['loss']:.4f} | {row['ece']:.4f} |"
        )
    return "\n".join(lines)


def plot_comparison(rows: Sequence[dict]):
    """Bar charts of accuracy and training time (log scale) per model; returns the figure."""
    import matplotlib.pyplot as plt

    from digitlab import plots  # noqa: F401  (selects the Agg backend)

    names = [row["model"] for row in rows]
    fig, (ax_acc, ax_time) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(rows)), 4))
    accuracy = [row["accuracy"] for row in rows]
    bars = ax_acc.bar(names, accuracy, color="tab:blue")
    ax_acc.bar_label(bars, labels=[f"{a:.3f}" for a in accuracy], fontsize=8)
    ax_acc.set_ylim(max(0.0, min(accuracy) - 0.1), 1.0)
    ax_acc.set_ylabel(f"accuracy ({rows[0]['eval_set']}, {rows[0]['eval_size']:,} images)")
    ax_acc.set_title("Accuracy")
    seconds = [max(row["train_seconds"], 1e-3) for row in rows]
    bars = ax_time.bar(names, seconds, color="tab:orange")
    ax_time.bar_label(bars, labels=[f"{s:.1f}" for s in seconds], fontsize=8)
    ax_time.set_yscale("log")
    ax_time.set_ylabel("training seconds (log scale)")
    ax_time.set_title("Training time")
    for ax in (ax_acc, ax_time):
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="x", rotation=30 if len(rows) > 6 else 0)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- sweep grid


def parse_assignment(text: str) -> tuple[str, list]:
    """Parse ``FIELD=V1,V2,...`` (``--set``) into a TrainConfig field and its values.

    Values are converted to the field's type; ``hidden`` takes layer sizes
    joined by ``+`` (``hidden=256+128,512`` is two grid values) and
    ``learning_rate`` also takes ``default`` (the optimizer's own).  Raises
    :class:`ConfigError` for an unknown field or a value of the wrong type.
    """
    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    fields = _config_fields()
    if not sep or not name:
        raise ConfigError(f"--set: expected FIELD=VALUE[,VALUE...]. Received: {text!r}")
    if name not in fields:
        raise ConfigError(f"--set: expected a field of {', '.join(fields)}. Received: {name!r}")
    parts = [part.strip() for part in raw.split(",")]
    if not raw.strip() or any(not part for part in parts):
        raise ConfigError(f"--set {name}: expected comma-separated values. Received: {raw!r}")
    values = [_convert(name, fields[name], part) for part in parts]
    return name, _unique(values)


def build_grid(
    base: TrainConfig | None = None,
    *,
    hidden: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    seeds: int | None = None,
    assignments: Sequence[tuple[str, Sequence]] = (),
) -> list[dict]:
    """Every combination of the given values, as a list of override dicts.

    ``hidden`` × ``layers`` gives ``hidden=(h,) * layers`` (a missing one
    defaults to ``base``'s first width or its depth); ``assignments`` are
    ``(field, values)`` pairs from :func:`parse_assignment`; ``seeds=n`` adds
    ``seed`` 0..n-1, varied fastest.  No axes at all gives one empty override.
    """
    axes: list[tuple[str, list]] = []
    seen: set[str] = set()
    for name, _ in assignments:
        if name in seen:
            raise ConfigError(f"--set {name}: expected each field once. Received it twice")
        seen.add(name)
    if hidden is not None or layers is not None:
        if "hidden" in seen:
            raise ConfigError("--set hidden: expected either --hidden/--layers or --set hidden")
        base = base or TrainConfig()
        widths = _unique(hidden) if hidden is not None else [base.hidden[0]]
        depths = _unique(layers) if layers is not None else [len(base.hidden)]
        for value in (*widths, *depths):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"--hidden/--layers: expected positive integers. Received: {value!r}"
                )
        axes.append(("hidden", [(width,) * depth for depth in depths for width in widths]))
    axes.extend((name, list(values)) for name, values in assignments)
    if seeds is not None:
        if "seed" in seen:
            raise ConfigError("--set seed: expected either --seeds or --set seed")
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ConfigError(f"--seeds: expected a positive integer. Received: {seeds!r}")
        axes.append(("seed", list(range(seeds))))
    seed_axis = [axis for axis in axes if axis[0] == "seed"]
    axes = [axis for axis in axes if axis[0] != "seed"] + seed_axis  # seeds vary fastest
    names = [name for name, _ in axes]
    combos = itertools.product(*(values for _, values in axes))
    return [dict(zip(names, combo, strict=True)) for combo in combos]


def grid_configs(base: TrainConfig, grid: Sequence[dict]) -> list[TrainConfig]:
    """``dataclasses.replace(base, **overrides)`` for each grid point, validated
    up front (an invalid value or model name fails before any training)."""
    from digitlab.training import check_model_name

    configs = []
    for overrides in grid:
        config = dataclasses.replace(base, **overrides)
        check_model_name(config.model)
        configs.append(config)
    return configs


def trial_key(config: TrainConfig, data_fingerprint: str) -> str:
    """A stable 16-hex-digit name for one trial: the hash of its config and data."""
    text = json.dumps(
        {"trial": 1, "config": config.to_dict(), "data": data_fingerprint},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def data_fingerprint(dataset: data_module.Dataset) -> str:
    """SHA-256 of the dataset's arrays and class names (the file checksums alone
    would not tell a slice of MNIST from the whole)."""
    digest = hashlib.sha256()
    for array in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data)
    digest.update(json.dumps(list(dataset.class_names)).encode("utf-8"))
    return digest.hexdigest()


# --------------------------------------------------------------------------- sweep run


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
        raise ConfigError(f"--workers: expected a positive integer. Received: {workers!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: expected a folder for the sweep. {out} is a file")
    configs = list(dict.fromkeys(configs))  # a repeated grid point is one trial
    varied = _varied_fields(configs)
    if dataset is None:
        dataset = data_module.load_dataset(data_dir, progress=False)
    fingerprint = data_fingerprint(dataset)
    keys = [trial_key(config, fingerprint) for config in configs]
    trials_dir = out / TRIALS_FOLDER
    trials_dir.mkdir(parents=True, exist_ok=True)

    done: dict[str, dict] = {}
    for key in keys:
        record = _read_trial(trials_dir / f"{key}.json")
        if record is not None:
            done[key] = record
    pending = [(key, config) for key, config in zip(keys, configs, strict=True) if key not in done]
    skipped = len(done)
    where = (
        f"on the Ray cluster at {ray_address}"
        if ray_address
        else f"in {workers} worker process(es)"
        if workers > 1
        else "in this process"
    )
    print(
        f"sweep: {len(configs)} trial(s) into {out}"
        + (f"; skipping {skipped} already finished" if skipped else "")
        + (f"; running {len(pending)} {where}" if pending else "; nothing left to run"),
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
        _write_text(trials_dir / f"{key}.json", json.dumps(record, indent=2) + "\n")
        done[key] = record
        progress.report(f"{label}: acc {record['accuracy']:.4f} in {record['train_seconds']:.1f} s")

    keep_root = out / "runs" if keep_models else None
    if pending:
        if ray_address:
            _run_on_ray(ray_address, pending, dataset, keep_root, finished)
        elif workers > 1:
            _run_in_pool(workers, pending, dataset, keep_root, finished)
        else:
            for key, config in pending:
                keep_dir = keep_root / key if keep_root is not None else None
                try:
                    record = execute_trial(config, dataset, keep_dir=keep_dir)
                except DigitlabError as exc:
                    finished(key, config, None, str(exc))
                else:
                    finished(key, config, record, None)

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
    return {
        "config": config.to_dict(),
        **_scores(run.metrics),
        **_sizes_and_timings(run.info),
        "seconds_per_epoch": run.info.get("seconds_per_epoch"),
        "history": {k: v for k, v in run.history.items() if k != "epoch_seconds"},
        "run_dir": str(run_dir) if keep_dir is not None else None,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "finished": _now(),
    }


def comparable(record: dict) -> dict:
    """A trial record without the fields that depend on when and where it ran."""
    return {k: v for k, v in record.items() if k not in RUN_DEPENDENT_FIELDS}


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
            eta = f" (~{_duration(per_trial * left)} left)"
        print(f"[{self.finished}/{self.total}] {text}{eta}", file=self.log, flush=True)


_WORKER_DATASET: data_module.Dataset | None = None


def _init_worker(dataset: data_module.Dataset) -> None:
    global _WORKER_DATASET
    _WORKER_DATASET = dataset


def _pool_trial(config: TrainConfig, keep_dir) -> dict:
    if _WORKER_DATASET is None:  # pragma: no cover - set by the initializer
        raise RuntimeError("worker started without its dataset")
    return execute_trial(config, _WORKER_DATASET, keep_dir=keep_dir)


def _run_in_pool(workers, pending, dataset, keep_root, finished: Callable) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: each worker starts a fresh interpreter that imports
    # digitlab (and so chooses the Keras backend) itself; forking a process
    # that already runs JAX's threads can deadlock.
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(dataset,),
    ) as pool:
        futures = {
            pool.submit(_pool_trial, config, keep_root / key if keep_root is not None else None): (
                key,
                config,
            )
            for key, config in pending
        }
        try:
            for future in as_completed(futures):
                key, config = futures[future]
                try:
                    record = future.result()
                except DigitlabError as exc:
                    finished(key, config, None, str(exc))
                else:
                    finished(key, config, record, None)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _ray_trial(config_dict: dict, dataset: data_module.Dataset, keep_dir) -> dict:
    return execute_trial(TrainConfig.from_dict(config_dict), dataset, keep_dir=keep_dir)


def _run_on_ray(address: str, pending, dataset, keep_root, finished: Callable) -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    host, _, port = address.rpartition(":")
    loopback = host.strip("[]") in ("127.0.0.1", "localhost", "::1")
    if loopback:
        # A cluster on this machine: without this Ray swaps the loopback address
        # for the machine's public one, where a loopback-only cluster is not.
        if "ray" in sys.modules and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
            raise ConfigError(
                f"--ray-address: ray was imported before digitlab could keep it on "
                f"loopback for {address}; set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 first"
            )
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if address != "auto":
        _check_reachable(address, host.strip("[]"), port)
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray-address: expected the ray package. Install it with "
            "pip install 'digitlab[cluster]'"
        ) from None
    try:
        ray.init(
            address=address,
            log_to_driver=False,
            # Workers import digitlab fresh; give them the driver's backend choice.
            runtime_env={"env_vars": {"KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}},
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"--ray-address: could not connect to a Ray cluster at {address}. {_first_line(exc)}"
        ) from None
    try:
        # Once into the object store: every task on every node reads the same
        # copy (zero-copy on the driver's node) instead of loading files itself.
        dataset_ref = ray.put(dataset)
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_trial)
        futures = {
            task.remote(
                config.to_dict(),
                dataset_ref,
                str(keep_root / key) if keep_root is not None else None,
            ): (key, config)
            for key, config in pending
        }
        remaining = list(futures)
        while remaining:
            ready, remaining = ray.wait(remaining, num_returns=1)
            key, config = futures[ready[0]]
            try:
                record = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                # On a cluster this is mostly the environment (digitlab missing on
                # a node, a worker killed for memory): one line, and go on.
                cause = getattr(exc, "cause", None) or exc
                message = str(cause) if isinstance(cause, DigitlabError) else _first_line(cause)
                if not isinstance(cause, DigitlabError):
                    message = f"{type(cause).__name__}: {message}"
                finished(key, config, None, message)
            else:
                finished(key, config, record, None)
    finally:
        ray.shutdown()


def _check_reachable(address: str, host: str, port: str) -> None:
    """Fail in seconds on a wrong address: Ray itself retries for minutes."""
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address: expected HOST:PORT or auto. Received: {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise ConfigError(
            f"--ray-address: could not reach a Ray cluster at {address}. {exc.strerror or exc}"
        ) from None


# --------------------------------------------------------------------------- results


def summarize(trials: Sequence[dict], varied: Sequence[str]) -> list[dict]:
    """One row per grid point (config without its seed): the varied fields,
    ``seeds`` (trials), and mean and sample standard deviation (n-1; 0 for one
    seed) of accuracy, loss, ECE, training and prediction seconds; ``params``
    is the mean model size (the same for every seed of a Keras model)."""
    groups: dict[str, list[dict]] = {}
    for record in trials:
        point = {k: v for k, v in record["config"].items() if k != "seed"}
        groups.setdefault(json.dumps(point, sort_keys=True), []).append(record)
    rows = []
    for records in groups.values():
        config = records[0]["config"]
        row = {name: config[name] for name in varied if name != "seed"}
        if "hidden" in row:
            row["layers"] = len(config["hidden"])
            widths = set(config["hidden"])
            row["neurons"] = widths.pop() if len(widths) == 1 else None
        row["seeds"] = len(records)
        for metric in (
            "accuracy",
            "loss",
            "ece",
            "train_seconds",
            "predict_seconds_per_10k",
        ):
            values = [float(r[metric]) for r in records]
            row[f"{metric}_mean"] = statistics.fmean(values)
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row["params"] = statistics.fmean(float(r["params"]) for r in records)
        rows.append(row)
    return rows


def format_sweep_table(summary: Sequence[dict], varied: Sequence[str]) -> str:
    """The sweep summary as a markdown table, one row per grid point (mean ±
    standard deviation where a point has several seeds)."""
    columns = [name for name in varied if name != "seed"]
    head = [*columns, "seeds", "params", "accuracy", "loss", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(columns) + "---:|" * 5]

    def spread(row, metric: str, digits: int) -> str:
        text = f"{row[f'{metric}_mean']:.{digits}f}"
        return text + (f" ± {row[f'{metric}_std']:.{digits}f}" if row["seeds"] > 1 else "")

    for row in summary:
        cells = [_cell(row[name]) for name in columns]
        cells += [
            str(row["seeds"]),
            f"{row['params']:,.0f}",
            spread(row, "accuracy", 4),
            spread(row, "loss", 4),
            spread(row, "train_seconds", 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_sweep_results(out, trials: Sequence[dict], summary: Sequence[dict], varied) -> None:
    """Write ``results.csv`` (one row per trial), ``summary.csv`` (one per grid
    point), ``results.json`` (both) and the plots into ``out``."""
    out = Path(out)
    trial_rows = []
    for record in trials:
        row = {"key": record["key"]}
        row.update({name: record["config"][name] for name in varied})
        row.update(
            {
                k: record[k]
                for k in (
                    "accuracy",
                    "loss",
                    "ece",
                    "macro_f1",
                    "params",
                    "size_unit",
                    "train_seconds",
                    "seconds_per_epoch",
                    "predict_seconds_per_10k",
                    "model_bytes",
                    "eval_set",
                    "eval_size",
                    "host",
                )
            }
        )
        trial_rows.append(row)
    _write_text(out / RESULTS_CSV, _csv_text(trial_rows))
    _write_text(out / SUMMARY_CSV, _csv_text(summary))
    _write_text(
        out / RESULTS_JSON,
        json.dumps(
            {"created": _now(), "varied": list(varied), "trials": trials, "summary": summary},
            indent=2,
        )
        + "\n",
    )
    for name, fig in plot_sweep(summary, varied).items():
        _save_png(out / name, fig)


def plot_sweep(summary: Sequence[dict], varied: Sequence[str]) -> dict:
    """The sweep's figures, file name → figure.

    When the grid varies ``hidden`` with equal widths (``--hidden`` ×
    ``--layers``): ``accuracy_vs_neurons.png`` (one line per layer count,
    error bars = standard deviation over seeds) and ``training_time.png``
    (seconds against layers and against neurons).  Always
    ``summary.png``: accuracy and training time per grid point.
    """
    import matplotlib.pyplot as plt

    from digitlab import plots  # noqa: F401  (selects the Agg backend)

    figures = {}
    if not summary:
        return figures
    others = [name for name in varied if name not in ("seed", "hidden")]
    if "hidden" in varied and all(row.get("neurons") for row in summary):

        def line_label(row, by: str) -> str:
            parts = [f"{row[by]} {by}"] + [f"{name}={_cell(row[name])}" for name in others]
            return ", ".join(parts)

        def lines(x_name: str, by: str, metric: str, ax) -> None:
            groups: dict[str, list[dict]] = {}
            for row in summary:
                groups.setdefault(line_label(row, by), []).append(row)
            for label, rows in groups.items():
                rows = sorted(rows, key=lambda r: r[x_name])
                ax.errorbar(
                    [r[x_name] for r in rows],
                    [r[f"{metric}_mean"] for r in rows],
                    yerr=[r[f"{metric}_std"] for r in rows],
                    marker="o",
                    capsize=3,
                    label=label,
                )
            ax.set_xlabel(f"{x_name} per layer" if x_name == "neurons" else "hidden layers")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)

        fig, ax = plt.subplots(figsize=(7, 4.5))
        lines("neurons", "layers", "accuracy", ax)
        _neuron_axis(ax, summary)
        ax.set_ylabel("accuracy (mean ± std over seeds)")
        ax.set_title("Accuracy against neurons per layer")
        fig.tight_layout()
        figures["accuracy_vs_neurons.png"] = fig

        fig, (ax_layers, ax_neurons) = plt.subplots(1, 2, figsize=(12, 4.5))
        lines("layers", "neurons", "train_seconds", ax_layers)
        ax_layers.set_xticks(sorted({row["layers"] for row in summary}))
        lines("neurons", "layers", "train_seconds", ax_neurons)
        _neuron_axis(ax_neurons, summary)
        for ax in (ax_layers, ax_neurons):
            ax.set_ylabel("training seconds (mean ± std)")
        ax_layers.set_title("Training time against layers")
        ax_neurons.set_title("Training time against neurons per layer")
        fig.tight_layout()
        figures["training_time.png"] = fig

    columns = [name for name in varied if name != "seed"]
    labels = [", ".join(f"{n}={_cell(row[n])}" for n in columns) or "base" for row in summary]
    height = max(3.0, 0.35 * len(summary) + 1.5)
    fig, (ax_acc, ax_time) = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    positions = range(len(summary))
    ax_acc.barh(
        positions,
        [row["accuracy_mean"] for row in summary],
        xerr=[row["accuracy_std"] for row in summary],
        color="tab:blue",
        capsize=3,
    )
    low = min(row["accuracy_mean"] - row["accuracy_std"] for row in summary)
    ax_acc.set_xlim(max(0.0, low - 0.02), 1.0)
    ax_acc.set_yticks(list(positions), labels, fontsize=8)
    ax_acc.invert_yaxis()
    ax_acc.set_xlabel("accuracy (mean ± std over seeds)")
    ax_time.barh(
        positions,
        [row["train_seconds_mean"] for row in summary],
        xerr=[row["train_seconds_std"] for row in summary],
        color="tab:orange",
        capsize=3,
    )
    ax_time.set_xlabel("training seconds (mean ± std)")
    for ax in (ax_acc, ax_time):
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    figures["summary.png"] = fig
    return figures


def _neuron_axis(ax, summary) -> None:
    # Widths usually double (32, 64, 128...): a log2 axis spaces them evenly.
    neurons = sorted({row["neurons"] for row in summary})
    if len(neurons) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(neurons, [str(n) for n in neurons])
    ax.minorticks_off()


# --------------------------------------------------------------------------- helpers


def _config_fields() -> dict[str, object]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def _convert(name: str, hint, text: str):
    """``text`` as a value of type ``hint`` for field ``name`` (ConfigError if not)."""
    optional = typing.get_origin(hint) in (typing.Union, type(int | None)) and type(
        None
    ) in typing.get_args(hint)
    if optional:
        if text.lower() in ("none", "default"):
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    try:
        if hint is str:
            return text
        if hint is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if typing.get_origin(hint) is tuple:
            return tuple(int(part) for part in text.split("+"))
    except ValueError:
        kind = {int: "an integer", float: "a number", bool: "true or false"}.get(
            hint, "integers joined by +, e.g. 256+128"
        )
        raise ConfigError(f"--set {name}: expected {kind}. Received: {text!r}") from None
    raise ConfigError(f"--set {name}: this field cannot be set from the command line")


def _unique(values: Iterable) -> list:
    return list(dict.fromkeys(values))


def _varied_fields(configs: Sequence[TrainConfig]) -> list[str]:
    if not configs:
        return []
    dicts = [config.to_dict() for config in configs]
    return [
        name for name in dicts[0] if len({json.dumps(d[name], sort_keys=True) for d in dicts}) > 1
    ]


def _describe(config: TrainConfig, varied: Sequence[str]) -> str:
    data = config.to_dict()
    return " ".join(f"{name}={_cell(data[name])}" for name in (list(varied) or ["model"]))


def _cell(value) -> str:
    if isinstance(value, list | tuple):
        return "(" + ",".join(str(v) for v in value) + ")"
    return str(value)


def _read_trial(path: Path) -> dict | None:
    """A finished trial's record, or None if absent or unreadable (then it reruns)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and "accuracy" in record else None


def _csv_text(rows: Sequence[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) if isinstance(v, list | tuple) else v for k, v in row.items()})
    return buffer.getvalue()


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder: never a partial file at ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_png(path: Path, fig) -> None:
    from digitlab.plots import save_figure

    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        save_figure(fig, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _megabytes(size) -> str:
    if size is None:
        return "–"
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
