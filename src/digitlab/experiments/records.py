"""Compare rows and trial records, read from runs: the one place the
experiments read a run's info, metrics and history.

Timings are honest: ``train_seconds`` is the fit's wall time *minus* the
time XLA spent compiling, which is reported beside it as ``compile_seconds``
(``None`` for a run that did not record it: then ``train_seconds`` is the
whole fit, compilation included, as before).  Without that a sweep's first
trial, which compiles while later ones hit the compilation cache, looks the
slowest whatever its size.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from digitlab.runs import now

#: Trial record fields that measure time or place, not what was computed.
RUN_DEPENDENT_FIELDS = frozenset(
    {
        "train_seconds",
        "compile_seconds",
        "seconds_per_epoch",
        "predict_seconds_per_10k",
        "finished",
        "host",
        "pid",
        "run_dir",
        "model_bytes",  # archives embed timestamps, so their size can vary by a byte or so
    }
)


def comparison_row(run, *, out=None) -> dict:
    """One row of a comparison for a trained or loaded run: its size, timings
    and scores; ``run_dir`` relative to ``out`` when given."""
    return {
        "model": run.config.model,
        **_sizes_and_timings(run.info),
        **_scores(run.metrics),
        "run_dir": str(Path(run.path).relative_to(out) if out is not None else run.path),
    }


def trial_record(run, *, run_dir=None) -> dict:
    """What a sweep keeps of one finished trial (``trials/<key>.json`` adds
    the key and the data fingerprint): config, scores, size, timings, the
    training curves, and where and when it ran."""
    curves = run.history.curves
    return {
        "config": run.config.to_dict(),
        **_scores(run.metrics),
        **_sizes_and_timings(run.info),
        "seconds_per_epoch": run.info.seconds_per_epoch,
        "history": {name: [float(v) for v in values] for name, values in curves.items()},
        "run_dir": str(run_dir) if run_dir is not None else None,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "finished": now(),
    }


def comparable(record: dict) -> dict:
    """A trial record without the fields that depend on when and where it ran."""
    return {k: v for k, v in record.items() if k not in RUN_DEPENDENT_FIELDS}


def _sizes_and_timings(info) -> dict:
    fit_seconds = float(info.train_seconds)
    compile_seconds = None if info.compile_seconds is None else float(info.compile_seconds)
    return {
        "params": int(info.params),
        "size_unit": info.size_unit or "parameters",
        "model_bytes": info.model_bytes,
        "train_seconds": max(0.0, fit_seconds - (compile_seconds or 0.0)),
        "compile_seconds": compile_seconds,
        "predict_seconds_per_10k": float(info.predict_seconds_per_10k),
    }


def _scores(metrics) -> dict:
    return {
        "accuracy": float(metrics.accuracy),
        "loss": float(metrics.loss),
        "ece": float(metrics.ece),
        "macro_f1": float(metrics.macro_f1),
        "eval_set": metrics.set,
        "eval_size": int(metrics.size),
    }
