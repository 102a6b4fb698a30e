"""What a run folder holds: one definition of its files and their fields.

``config.json`` is :class:`~digitlab.config.TrainConfig`; ``run.json`` is
:class:`RunInfo` (with :class:`DataInfo`); ``history.json`` is
:class:`History`; ``metrics.json`` is :class:`Metrics`.  Each is a frozen
dataclass with ``to_dict()`` (what is written) and ``from_dict(data, file=)``
(what is read), which checks every field's type and raises one
:class:`~digitlab.errors.RunError` naming the file and field.  Fields added
since digitlab 0.1.0 are optional, so its runs still load; keys this version
does not know are kept (``extra``) and written back unchanged.

For scripts written against 0.1.0, when these were plain dicts, each object
also answers ``obj["field"]``, ``obj.get("field")``, ``"field" in obj`` and
iteration over its keys.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field

from digitlab.errors import RunError

CONFIG_FILE = "config.json"
INFO_FILE = "run.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
#: The report's figures (written by :mod:`digitlab.plots`, served by ``digitlab serve``).
REPORT_FILES = (
    "confusion_matrix.png",
    "training_curves.png",
    "predictions.png",
    "mistakes.png",
    "reliability.png",
    "weights.png",
    "saliency.png",
)
#: The largest JSON file of a run folder that is read (a metrics.json of 10,000
#: classes is ~100 MB; anything larger is not one digitlab wrote).
MAX_JSON_BYTES = 256 * 2**20

_MISSING = object()


def _kind_ok(value, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    if kind == "dict":
        return isinstance(value, dict)
    raise ValueError(kind)  # pragma: no cover - a typo in this module


_KIND_TEXT = {
    "str": "a string",
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "list": "a list",
    "dict": "an object",
}


def _take(data: dict, name: str, kind: str, file: str, *, default=_MISSING, nullable=False):
    """``data[name]`` checked to be of ``kind`` (or None when ``nullable``)."""
    if name not in data:
        if default is _MISSING:
            raise RunError(f"{file}: expected the field {name!r}. It is missing")
        return default
    value = data[name]
    if value is None and nullable:
        return None
    if not _kind_ok(value, kind):
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:39] + "…"
        raise RunError(f"{file}: field {name!r}: expected {_KIND_TEXT[kind]}. Found {shown}")
    return value


def _object(data, file: str) -> dict:
    if not isinstance(data, dict):
        raise RunError(f"{file}: expected a JSON object. Found {type(data).__name__}")
    return data


def _strings(values: list, name: str, file: str) -> tuple[str, ...]:
    if not all(isinstance(v, str) for v in values):
        raise RunError(f"{file}: field {name!r}: expected a list of strings")
    return tuple(values)


def _ints(values: list, name: str, file: str) -> tuple[int, ...]:
    if not all(_kind_ok(v, "int") and v >= 1 for v in values):
        raise RunError(f"{file}: field {name!r}: expected a list of positive integers")
    return tuple(int(v) for v in values)


class _Record:
    """Read-only dict-style access, for scripts written when these were dicts."""

    def __getitem__(self, key: str):
        data = self.to_dict()
        return data[key]

    def get(self, key: str, default=None):
        return self.to_dict().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def keys(self):
        return self.to_dict().keys()

    def items(self):
        return self.to_dict().items()

    def _known(self) -> dict:
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"
        }


@dataclass(frozen=True)
class DataInfo(_Record):
    """The data a run was trained on (``run.json``'s ``data``)."""

    name: str
    source: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, ...]
    sha256: dict = field(default_factory=dict)
    verified: bool = False
    train_size: int | None = None
    eval_set: str = "validation"
    eval_size: int | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = self._known()
        data["class_names"] = list(self.class_names)
        data["image_shape"] = list(self.image_shape)
        return {**self.extra, **data}

    @classmethod
    def from_dict(cls, data, file: str = INFO_FILE) -> DataInfo:
        data = _object(data, f"{file} data")
        where = f"{file}: data"
        names = _strings(_take(data, "class_names", "list", where), "class_names", where)
        if not names:
            raise RunError(f"{where}: field 'class_names': expected at least one class")
        shape = _ints(_take(data, "image_shape", "list", where), "image_shape", where)
        if not shape:
            raise RunError(f"{where}: field 'image_shape': expected at least one dimension")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(
            name=_take(data, "name", "str", where, default="mnist"),
            source=_take(data, "source", "str", where, default=""),
            class_names=names,
            image_shape=shape,
            sha256=_take(data, "sha256", "dict", where, default={}),
            verified=_take(data, "verified", "bool", where, default=False),
            train_size=_take(data, "train_size", "int", where, default=None, nullable=True),
            eval_set=_take(data, "eval_set", "str", where, default="validation"),
            eval_size=_take(data, "eval_size", "int", where, default=None, nullable=True),
            extra={k: v for k, v in data.items() if k not in known},
        )


@dataclass(frozen=True)
class RunInfo(_Record):
    """``run.json``: how the run was made (sizes, timings, data, versions)."""

    created: str
    params: int
    data: DataInfo
    size_unit: str = "parameters"
    train_seconds: float = 0.0
    compile_seconds: float | None = None
    first_epoch_seconds: float | None = None
    seconds_per_epoch: float | None = None
    predict_seconds_per_10k: float | None = None
    model_bytes: int | None = None
    model_format: str | None = None
    #: ``{"method": "temperature", "temperature": T, "fitted_on": set, "size": n,
    #: "ece_before": e, "loss_before": l}``, or None (not calibrated: T = 1).
    calibration: dict | None = None
    versions: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def temperature(self) -> float:
        """The temperature every prediction of this run is scaled by (1.0: none)."""
        return float(self.calibration["temperature"]) if self.calibration else 1.0

    @property
    def baseline(self) -> dict | None:
        """What a scikit-learn baseline recorded (estimator, params, convergence)."""
        value = self.extra.get("baseline")
        return value if isinstance(value, dict) else None

    def to_dict(self) -> dict:
        data = self._known()
        data["data"] = self.data.to_dict()
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data, file: str = INFO_FILE) -> RunInfo:
        data = _object(data, file)
        known = {f.name for f in dataclasses.fields(cls)}

        def number(name):
            return _take(data, name, "number", file, default=None, nullable=True)

        return cls(
            created=_take(data, "created", "str", file, default=""),
            params=_take(data, "params", "int", file, default=0),
            data=DataInfo.from_dict(_take(data, "data", "dict", file), file),
            size_unit=_take(data, "size_unit", "str", file, default="parameters"),
            train_seconds=_take(data, "train_seconds", "number", file, default=0.0),
            compile_seconds=number("compile_seconds"),
            first_epoch_seconds=number("first_epoch_seconds"),
            seconds_per_epoch=number("seconds_per_epoch"),
            predict_seconds_per_10k=number("predict_seconds_per_10k"),
            model_bytes=_take(data, "model_bytes", "int", file, default=None, nullable=True),
            model_format=_take(data, "model_format", "str", file, default=None, nullable=True),
            calibration=_calibration(
                _take(data, "calibration", "dict", file, default=None, nullable=True), file
            ),
            versions=_take(data, "versions", "dict", file, default={}),
            extra={k: v for k, v in data.items() if k not in known},
        )


def _calibration(value: dict | None, file: str) -> dict | None:
    if value is None:
        return None
    temperature = _take(value, "temperature", "number", f"{file}: calibration")
    if not (0.0 < temperature < float("inf")):
        raise RunError(
            f"{file}: calibration: field 'temperature': expected a positive number. "
            f"Found {temperature!r}"
        )
    return value


@dataclass(frozen=True)
class History(_Record):
    """``history.json``: Keras' per-epoch curves (``loss``, ``val_accuracy``…)
    and the seconds each epoch took; empty for models without epochs."""

    curves: dict = field(default_factory=dict)
    epoch_seconds: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        data = {key: list(values) for key, values in self.curves.items()}
        if self.epoch_seconds or self.curves:
            data["epoch_seconds"] = list(self.epoch_seconds)
        return data

    @classmethod
    def from_dict(cls, data, file: str = HISTORY_FILE) -> History:
        data = _object(data, file)
        curves = {}
        for key, values in data.items():
            if not isinstance(values, list) or not all(_kind_ok(v, "number") for v in values):
                raise RunError(f"{file}: field {key!r}: expected a list of numbers")
            curves[key] = tuple(float(v) for v in values)
        seconds = curves.pop("epoch_seconds", ())
        return cls(curves=curves, epoch_seconds=seconds)


@dataclass(frozen=True)
class Metrics(_Record):
    """``metrics.json``: the evaluation written at training time (see
    :meth:`digitlab.evaluation.Evaluation.to_dict`)."""

    set: str
    size: int
    loss: float
    accuracy: float
    ece: float
    macro_f1: float
    class_names: tuple[str, ...]
    per_class: dict = field(default_factory=dict)
    confusion_matrix: list = field(default_factory=list)
    worst_mistakes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = self._known()
        data["class_names"] = list(self.class_names)
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data, file: str = METRICS_FILE) -> Metrics:
        data = _object(data, file)
        known = {f.name for f in dataclasses.fields(cls)}
        matrix = _take(data, "confusion_matrix", "list", file, default=[])
        if not all(
            isinstance(row, list) and all(_kind_ok(v, "int") for v in row) for row in matrix
        ):
            raise RunError(f"{file}: field 'confusion_matrix': expected rows of integers")
        mistakes = _take(data, "worst_mistakes", "list", file, default=[])
        if not all(isinstance(m, dict) for m in mistakes):
            raise RunError(f"{file}: field 'worst_mistakes': expected a list of objects")
        names = _take(data, "class_names", "list", file, default=[])
        return cls(
            set=_take(data, "set", "str", file),
            size=_take(data, "size", "int", file),
            loss=float(_take(data, "loss", "number", file)),
            accuracy=float(_take(data, "accuracy", "number", file)),
            ece=float(_take(data, "ece", "number", file)),
            macro_f1=float(_take(data, "macro_f1", "number", file, default=0.0)),
            class_names=_strings(names, "class_names", file),
            per_class=_take(data, "per_class", "dict", file, default={}),
            confusion_matrix=matrix,
            worst_mistakes=mistakes,
            extra={k: v for k, v in data.items() if k not in known},
        )
