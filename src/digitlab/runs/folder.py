"""A run is a folder: model, config, versions, history, metrics and plots.

:func:`save_run` writes one atomically (into a hidden temporary folder beside
the target, renamed into place at the end, so a crash never leaves a
half-written run under its final name); :func:`load_run` reads one back,
checks it (every file, every field, the model against the run's classes and
image shape) and is all that evaluate, predict and serve need.  No training
code is imported here.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab import _files
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError, RunError
from digitlab.inference.classifier import Classifier
from digitlab.inference.formats import ModelFormat, detect_format, get_format
from digitlab.runs.schema import (
    CONFIG_FILE,
    HISTORY_FILE,
    INFO_FILE,
    MAX_JSON_BYTES,
    METRICS_FILE,
    History,
    Metrics,
    RunInfo,
)


@dataclass
class Run:
    """A trained model with everything recorded about how it was made.

    ``classifier`` predicts (see :mod:`digitlab.inference`); ``model`` is the
    object underneath it (a Keras model, a scikit-learn estimator); ``info``
    holds the library versions, the data's source and checksums, the size and
    timings; ``metrics`` the evaluation written at training time; ``history``
    the per-epoch training curves.
    """

    path: Path
    config: TrainConfig
    classifier: Classifier
    info: RunInfo
    history: History
    metrics: Metrics

    @property
    def model(self):
        return self.classifier.model

    @property
    def params(self) -> int:
        return int(self.info.params)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.data.class_names

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.info.data.image_shape

    @property
    def model_format(self):
        """The format of the run's model file (``run.json``'s ``model_format``,
        or for runs of 0.1.0 the file it holds); None when it holds none."""
        return _model_format(self.path, self.info)

    @property
    def is_digits(self) -> bool:
        """Whether the classes are the ten digits (so a number can be read)."""
        return self.class_names == tuple(str(d) for d in range(10))

    def predict_proba(self, x, *, batch_size: int = 1024) -> np.ndarray:
        """Probabilities ``(n, k)`` float32 for images ``(n, H, W)`` float in [0, 1]."""
        return self.classifier.predict_proba(x, batch_size=batch_size)


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


def now() -> str:
    """The local time, to the second, as ``run.json`` records it."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


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
    if path.is_symlink():  # renaming the run over it would fail after training
        raise RunError(f"{path}: expected a new or empty folder for the run. It is a symbolic link")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunError(f"{path}: expected a new or empty folder for the run. It already exists")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise RunError(f"{path}: expected a new or empty folder for the run. {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunError(f"{path}: expected a folder digitlab can write in. {parent} is not writable")
    return path


def save_run(
    path,
    *,
    config: TrainConfig,
    model,
    model_format: ModelFormat,
    info: RunInfo,
    history: History,
    metrics: Metrics,
    write_extras: Callable[[Path], object] | None = None,
) -> tuple[Path, RunInfo]:
    """Write a run folder atomically; return its path and the ``run.json``
    record as written.

    ``model`` is saved with ``model_format`` first, so ``info`` can record the
    format and the model file's size; ``write_extras(folder)``, if given,
    writes anything else (the plots).
    """
    path = check_run_dir(path)
    with _files.atomic_folder(path) as tmp:
        model_format.save(model, tmp / model_format.file_name)
        model_bytes = sum(
            f.stat().st_size for f in tmp.iterdir() if f.is_file() and f.name != _files.OWNER_FILE
        )
        info = dataclasses.replace(info, model_bytes=model_bytes, model_format=model_format.name)
        _write_json(tmp / CONFIG_FILE, config.to_dict())
        _write_json(tmp / INFO_FILE, info.to_dict())
        _write_json(tmp / HISTORY_FILE, history.to_dict())
        _write_json(tmp / METRICS_FILE, metrics.to_dict())
        if write_extras is not None:
            write_extras(tmp)
    return path, info


RUNTIMES = ("native", "onnx", "torch")


def load_run(path, *, quick: bool = False, runtime: str = "native") -> Run:
    """Load and check a run folder written by ``digitlab train`` (any version).

    With ``quick``, digitlab's own Keras networks are computed with NumPy
    (:mod:`digitlab.inference.numpy_keras`: the same answers, without
    importing Keras; ``run.model`` is then that network): what a one-off
    ``digitlab predict`` uses.  With ``runtime="onnx"`` the run's exported
    ``model.onnx`` (``digitlab export RUN --format onnx``) runs on onnxruntime
    instead, importing neither JAX, Keras nor scikit-learn.  With
    ``runtime="torch"`` the run's Keras network runs on PyTorch
    (:mod:`digitlab.inference.torch_runtime`: bfloat16 on CPUs with AMX, where
    it is several times faster), without Keras."""
    if runtime not in RUNTIMES:
        raise RunError(f"runtime: expected one of {', '.join(RUNTIMES)}. Received: {runtime!r}")
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: expected a run folder. It does not exist or is not a folder")
    try:
        config = TrainConfig.from_dict(_read_json(path / CONFIG_FILE))
    except ConfigError as exc:
        raise RunError(f"{path / CONFIG_FILE}: {exc}") from None
    if detect_format(path) is None:
        raise RunError(
            f"{path}: expected a model file model.keras or model.skops in the run folder. "
            "Found none (was training interrupted?)"
        )
    info = RunInfo.from_dict(_read_json(path / INFO_FILE), str(path / INFO_FILE))
    history_file = path / HISTORY_FILE
    history = (
        History.from_dict(_read_json(history_file), str(history_file))
        if history_file.exists()
        else History()
    )
    metrics = Metrics.from_dict(_read_json(path / METRICS_FILE), str(path / METRICS_FILE))
    if runtime == "onnx":
        classifier = _load_exported(path, info)
    elif runtime == "torch":
        classifier = _load_torch(path, info)
    else:
        classifier = load_classifier(path, config=config, info=info, quick=quick)
    return Run(
        path=path,
        config=config,
        classifier=classifier,
        info=info,
        history=history,
        metrics=metrics,
    )


def _model_format(path: Path, info: RunInfo):
    """The format ``run.json`` records, or (runs of 0.1.0) the one its model file has."""
    return get_format(info.model_format) if info.model_format else detect_format(path)


def load_classifier(
    path: Path, *, config: TrainConfig, info: RunInfo, quick: bool = False
) -> Classifier:
    """The run's model, loaded with its format and checked against ``info``."""
    model_format = _model_format(path, info)
    if model_format is None or not (path / model_format.file_name).is_file():
        expected = model_format.file_name if model_format else "model.keras or model.skops"
        raise RunError(
            f"{path}: expected a model file {expected} in the run folder. "
            "Found none (was training interrupted?)"
        )
    baseline = info.baseline or {}
    classifier = model_format.load_classifier(
        path,
        class_names=info.data.class_names,
        image_shape=info.data.image_shape,
        expected_class=baseline.get("estimator"),
        model_name=config.model,
        quick=quick,
    )
    classifier.temperature = info.temperature
    return classifier


def _load_torch(path: Path, info: RunInfo) -> Classifier:
    """The run's Keras network on PyTorch, with the run's temperature."""
    from digitlab.inference import formats, torch_runtime

    model_format = _model_format(path, info)
    if model_format is None or model_format.name != "keras":
        raise RunError(
            f"{path}: --runtime torch runs Keras networks; this run's model is "
            f"{model_format.file_name if model_format else 'missing'}. Use --runtime native"
        )
    file = path / model_format.file_name
    formats.check_archive(file, kind="Keras model archive")
    classifier = torch_runtime.load(
        file, class_names=info.data.class_names, image_shape=info.data.image_shape
    )
    classifier.temperature = info.temperature
    return classifier


def _load_exported(path: Path, info: RunInfo) -> Classifier:
    """The run's ONNX export, checked to come from the model file it holds now."""
    import hashlib

    from digitlab.inference.onnx_runtime import load_exported

    model_format = _model_format(path, info)
    digest = hashlib.sha256()
    with open(path / model_format.file_name, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return load_exported(
        path,
        class_names=info.data.class_names,
        image_shape=info.data.image_shape,
        source_sha256=digest.hexdigest(),
    )


def _read_json(file: Path):
    if not file.exists():
        raise RunError(f"{file.parent}: expected {file.name} in the run folder. It is missing")
    if not file.is_file():
        raise RunError(f"{file}: expected a regular file. Found something else")
    size = file.stat().st_size
    if size > MAX_JSON_BYTES:
        raise RunError(
            f"{file}: expected at most {MAX_JSON_BYTES // 2**20} MB of JSON. Found {size:,} bytes"
        )
    try:
        return json.loads(file.read_bytes()[: MAX_JSON_BYTES + 1].decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RunError(f"{file}: expected JSON. {_files.one_line(exc)}") from None


def _write_json(file: Path, data) -> None:
    file.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
