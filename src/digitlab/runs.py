"""A run is a folder: model, config, versions, history, metrics and plots.

``save_run`` writes one atomically (into a hidden temporary folder beside the
target, renamed into place at the end, so a crash never leaves a half-written
run under its final name); ``load_run`` reads one back and is all that
evaluate, predict and serve need.  No training code is imported here.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.config import TrainConfig
from digitlab.errors import ConfigError, RunError
from digitlab.predict import predict_proba

CONFIG_FILE = "config.json"
INFO_FILE = "run.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
KERAS_MODEL_FILE = "model.keras"
SKOPS_MODEL_FILE = "model.skops"  # scikit-learn baselines, saved with skops (never pickle)


@dataclass
class Run:
    """A trained model with everything recorded about how it was made.

    ``info`` holds the library versions, the data's source and checksums, the
    parameter count and timings; ``metrics`` the evaluation written at
    training time; ``history`` the per-epoch training curves.
    """

    path: Path
    config: TrainConfig
    model: Any
    info: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @property
    def params(self) -> int:
        return int(self.info.get("params", 0))

    @property
    def class_names(self) -> tuple[str, ...]:
        names = self.info.get("data", {}).get("class_names")
        return tuple(names) if names else tuple(str(i) for i in range(10))

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.info.get("data", {}).get("image_shape", (28, 28)))

    def predict_proba(self, x) -> np.ndarray:
        """Probabilities ``(n, k)`` float32 for images ``(n, H, W)`` float32 in [0, 1]."""
        return predict_proba(self.model, x)


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the libraries a run depends on."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in (
        "digitlab",
        "keras",
        "jax",
        "jaxlib",
        "tensorflow",
        "torch",
        "numpy",
        "scikit-learn",
        "skops",
    ):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    found["keras_backend"] = os.environ.get("KERAS_BACKEND", "")
    return found


def default_run_dir(model: str, root: str | os.PathLike = "runs") -> Path:
    """A new dated folder under ``root``, e.g. ``runs/20261128-154501-mlp``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{model}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def check_run_dir(path: str | os.PathLike) -> Path:
    """Refuse a target that already holds files: a run never overwrites data."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunError(f"{path}: expected a new or empty folder for the run. It already exists")
    return path


def save_run(
    path,
    *,
    config: TrainConfig,
    save_model,
    info: dict,
    history: dict,
    metrics: dict,
    write_extras=None,
) -> Path:
    """Write a run folder atomically and return its path.

    ``save_model(folder)`` writes the model file(s); ``write_extras(folder)``,
    if given, writes anything else (the plots).  Everything goes into a
    temporary folder beside ``path`` that is renamed into place only when all
    of it is written.
    """
    path = check_run_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        save_model(tmp)
        _write_json(tmp / CONFIG_FILE, config.to_dict())
        _write_json(tmp / INFO_FILE, info)
        _write_json(tmp / HISTORY_FILE, history)
        _write_json(tmp / METRICS_FILE, metrics)
        if write_extras is not None:
            write_extras(tmp)
        if path.exists():
            path.rmdir()  # empty, checked above
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_run(path) -> Run:
    """Load a run folder written by ``digitlab train``."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: expected a run folder. It does not exist or is not a folder")
    try:
        config = TrainConfig.from_dict(_read_json(path / CONFIG_FILE))
    except ConfigError as exc:
        raise RunError(f"{path / CONFIG_FILE}: {exc}") from None
    info = _read_json(path / INFO_FILE, default={})
    history = _read_json(path / HISTORY_FILE, default={})
    metrics = _read_json(path / METRICS_FILE, default={})
    model = _load_model(path, config=config, info=info)
    return Run(path=path, config=config, model=model, info=info, history=history, metrics=metrics)


def _load_model(path: Path, *, config: TrainConfig, info: dict):
    model_file = path / KERAS_MODEL_FILE
    skops_file = path / SKOPS_MODEL_FILE
    if skops_file.is_file() and not model_file.is_file():
        # A scikit-learn baseline; only trusted types are loaded (see digitlab.baselines).
        from digitlab.baselines import load_model

        data = info.get("data") if isinstance(info, dict) else None
        names = data.get("class_names") if isinstance(data, dict) else None
        return load_model(
            skops_file, model_name=config.model, num_classes=len(names) if names else 10
        )
    if not model_file.is_file():
        raise RunError(
            f"{path}: expected a model file {KERAS_MODEL_FILE} or {SKOPS_MODEL_FILE} in the "
            "run folder. Found none (was training interrupted?)"
        )
    from digitlab._backend import keras
    from digitlab.models import MODELS  # noqa: F401  (registers digitlab's own Keras layers)

    try:
        # safe_mode (the default) refuses to deserialise arbitrary Python lambdas.
        return keras().saving.load_model(model_file, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged archive
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{model_file}: expected a Keras model archive. {first}") from None


def _read_json(file: Path, default=None):
    if not file.is_file():
        if default is not None:
            return default
        raise RunError(f"{file.parent}: expected {file.name} in the run folder. It is missing")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{file}: expected JSON. {exc}") from None


def _write_json(file: Path, data) -> None:
    file.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
