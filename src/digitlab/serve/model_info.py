"""What the server tells about its run: ``/api/model`` and the report files."""

from __future__ import annotations

import re
from pathlib import Path

from digitlab.inference import Predictor
from digitlab.runs import REPORT_FILES
from digitlab.serve.middleware import Admission, ApiError
from digitlab.serve.requests import safe_name


def report_file(run, file_name: str) -> Path:
    """A report PNG of the run: only the known names, only regular files inside the run."""
    if run is None or file_name not in REPORT_FILES:
        raise ApiError(
            404,
            f"{safe_name(file_name)[:60]}: no such report file. Expected one of "
            f"{', '.join(REPORT_FILES)}",
        )
    folder = Path(run.path).resolve()
    path = (folder / file_name).resolve()
    if path.parent != folder or not path.is_file():
        raise ApiError(404, f"{file_name}: this run has no such report file")
    return path


def has_report_file(run, file_name: str) -> bool:
    try:
        report_file(run, file_name)
    except (ApiError, OSError):
        return False
    return True


_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~])(?:~?/|[A-Za-z]:\\)[^\s+,;]*")


def _hide_paths(value):
    """Local absolute paths (``/home/me/data``) reduced to their last part (``data``)."""
    if isinstance(value, str):
        return _ABSOLUTE_PATH.sub(
            lambda m: m.group(0).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or "/", value
        )
    if isinstance(value, dict):
        return {key: _hide_paths(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_hide_paths(item) for item in value]
    return value


def model_info(predictor: Predictor, admission: Admission, max_body_bytes: int) -> dict:
    run = predictor.run
    info = {
        "backend": predictor.backend,
        "class_names": list(predictor.class_names),
        "image_shape": list(predictor.image_shape),
        "limits": {
            "max_body_bytes": max_body_bytes,
            "max_concurrency": admission.max_concurrency,
            "max_queue": admission.max_queue,
        },
    }
    if run is None:
        return info
    metrics, record = run.metrics, run.info
    data = record.data.to_dict()
    data.pop("sha256", None)
    folder = Path(run.path)
    info.update(
        {
            "run": folder.name,
            "model": run.config.model,
            "config": run.config.to_dict(),
            "params": run.params,
            "created": record.created,
            "train_seconds": record.train_seconds,
            "seconds_per_epoch": record.seconds_per_epoch,
            "data": data,
            "metrics": {
                key: getattr(metrics, key)
                for key in ("set", "size", "accuracy", "loss", "ece", "macro_f1")
            },
            "per_class": metrics.per_class,
            "confusion_matrix": metrics.confusion_matrix,
            "worst_mistakes": metrics.worst_mistakes[:10],
            "history": {key: list(values) for key, values in run.history.curves.items()},
            "versions": record.versions,
        }
    )
    info = _hide_paths(info)
    info["report"] = {
        name.removesuffix(".png"): f"/api/report/{name}"
        for name in REPORT_FILES
        if has_report_file(run, name)
    }
    return info
