"""The model contract: one registry of model kinds, one entry per ``--model`` name.

A :class:`ModelKind` says what the model is (``description``), how it differs
from the tutorial's settings (``defaults``), how it trains (``fit``, returning
one :class:`TrainResult`) and which file format it is saved in (``format``, a
name from :data:`digitlab.inference.formats.FORMATS`).  ``digitlab.train`` has
no branch on the kind, and the command line's list of models, its help and its
validation come from here.  Adding a model is one :func:`register` call::

    def fit(config, parts, *, class_names, image_shape, verbose, log, callbacks):
        model = ...                                   # train on parts.x_train, parts.y_train
        return TrainResult(model=model, params=..., train_seconds=...)

    register(ModelKind("tiny", "a tiny network", fit, format="keras"))

This module imports nothing heavy: listing the models never loads Keras.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from digitlab.errors import ConfigError


@dataclass
class TrainResult:
    """What a kind's ``fit`` returns.

    ``model``: what the kind's format saves and wraps (a Keras model, a
    scikit-learn estimator); ``params``: its size in ``size_unit``;
    ``train_seconds``: wall time of the fit; ``compile_seconds``: the part of it
    spent tracing and compiling (None when the kind does not compile);
    ``epoch_seconds`` and ``history``: per-epoch timings and curves (Keras'
    ``History.history``); ``info``: anything else ``run.json`` should record,
    under the kind's ``info_key``.
    """

    model: Any
    params: int
    train_seconds: float
    size_unit: str = "parameters"
    compile_seconds: float | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def check_converging(loss: float, epoch: int) -> None:
    """What a training ``fit`` raises once its loss is not finite: one
    :class:`ConfigError` naming ``learning_rate``."""
    if not math.isfinite(loss):
        raise ConfigError(
            f"learning_rate: expected a rate at which training converges. The loss "
            f"became {loss} in epoch {epoch}; try a smaller learning rate"
        )


@dataclass(frozen=True)
class ModelKind:
    """One kind of model.

    ``fit(config, parts, *, class_names, image_shape, verbose, log, callbacks)``
    trains on ``parts`` (a :class:`~digitlab.data.Split`) and returns a
    :class:`TrainResult`.  ``defaults``: config fields whose value differs from
    the tutorial's for this kind (``TrainConfig.for_model`` applies them).
    ``family`` groups kinds in help texts; ``slow`` kinds are left out of
    ``compare``'s default list; ``info_key`` names the ``run.json`` entry for
    :attr:`TrainResult.info`.  ``engines``: the engines (``TrainConfig.engine``)
    that may train this kind when none is asked for, in order of preference,
    each with the fields whose default differs under it; the first one
    installed trains it (``keras``, always installed, when none is listed).
    """

    name: str
    description: str
    fit: Callable[..., TrainResult]
    format: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    family: str = "keras"
    slow: bool = False
    info_key: str | None = None
    engines: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(
            self,
            "engines",
            MappingProxyType(
                {name: MappingProxyType(dict(fields)) for name, fields in self.engines.items()}
            ),
        )


_KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind, *, replace: bool = False) -> ModelKind:
    """Add ``kind`` under ``kind.name``; a name already taken is an error
    unless ``replace``."""
    if not isinstance(kind, ModelKind):
        raise ConfigError(f"kind: expected a ModelKind. Received: {type(kind).__name__}")
    if not kind.name or not isinstance(kind.name, str):
        raise ConfigError(f"name: expected a model name. Received: {kind.name!r}")
    if kind.name in _KINDS and not replace:
        raise ConfigError(f"name: {kind.name!r} is already a registered model kind")
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind (for tests and plugins that register temporarily)."""
    _KINDS.pop(name, None)


def get(name: str) -> ModelKind:
    """The kind named ``name``, or :class:`ConfigError` listing the valid names."""
    try:
        return _KINDS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"model: expected one of {', '.join(names())}. Received: model={name!r}"
        ) from None


def names() -> tuple[str, ...]:
    """Every registered name, in registration order (the tutorial's first)."""
    return tuple(_KINDS)


def kinds() -> tuple[ModelKind, ...]:
    return tuple(_KINDS.values())


def defaults_for(name: str, engine: str | None = None) -> Mapping[str, Any]:
    """The kind's own defaults (none for an unknown name): with ``engine``
    None, under the engine :func:`default_engine` picks (named in them when
    the kind lists engines); else under ``engine``."""
    kind = _KINDS.get(name)
    if kind is None:
        return MappingProxyType({})
    if not kind.engines:
        return kind.defaults
    chosen = engine or default_engine(name)
    fields = {**kind.defaults, **kind.engines.get(chosen, {})}
    if engine is None:
        fields["engine"] = chosen
    return MappingProxyType(fields)


def default_engine(name: str) -> str:
    """The engine that trains kind ``name`` when none is asked for: the first
    of its :attr:`ModelKind.engines` that is installed, else ``keras``."""
    kind = _KINDS.get(name)
    for engine in kind.engines if kind is not None else ():
        if engine == "keras" or _installed(engine):
            return engine
    return "keras"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked installation
        return False
