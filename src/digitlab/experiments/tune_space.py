"""The search space of ``digitlab tune``: ranges and choices over config fields."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from digitlab.config import TrainConfig
from digitlab.errors import ConfigError
from digitlab.experiments.grid import _config_fields, _convert

FIXED_FIELDS = ("split", "calibrate", "validation_size", "calibration_size", "dataset")
_SPEC_HELP = "expected FIELD=LOW..HIGH[:log][:int] or FIELD=A,B,C"


@dataclass(frozen=True)
class Param:
    """One searched field: a range (``low``..``high``, ``log``, ``integer``)
    or choices (``texts`` as written, ``values`` converted)."""

    name: str
    spec: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    texts: tuple[str, ...] = ()
    values: tuple = ()

    @property
    def is_range(self) -> bool:
        return self.low is not None


def parse_search_space(specs: Sequence[str]) -> list[Param]:
    """Parse ``FIELD=LOW..HIGH[:log][:int]`` ranges and ``FIELD=A,B,C`` choices.

    Any TrainConfig field except those that change the validation set
    (:data:`FIXED_FIELDS`), plus ``layers`` (the depth: ``hidden`` becomes
    ``(width,) * layers``).  A range of ``hidden`` is one layer's width;
    integer fields give integer ranges without ``:int``.  Raises
    :class:`ConfigError` naming ``space``.
    """
    if isinstance(specs, str):
        specs = [specs]
    fields = {**_config_fields(), "layers": int}
    params: list[Param] = []
    for text in specs:
        if not isinstance(text, str):
            raise ConfigError(f"space: {_SPEC_HELP}. Received: {text!r}")
        name, sep, raw = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not raw.strip():
            raise ConfigError(f"space: {_SPEC_HELP}. Received: {text!r}")
        if name not in fields:
            raise ConfigError(f"space: expected a field of {', '.join(fields)}. Received: {name!r}")
        if name in FIXED_FIELDS:
            raise ConfigError(
                f"space: expected a field other than {', '.join(FIXED_FIELDS)} (they change "
                f"the validation set the trials are judged on). Received: {name!r}"
            )
        if any(p.name == name for p in params):
            raise ConfigError(f"space: expected each field once. Received {name} twice")
        hint = fields[name]
        if ".." in raw:
            low_text, _, rest = raw.partition("..")
            high_text, _, options = rest.partition(":")
            params.append(_range_param(name, text, hint, low_text, high_text, options))
        else:
            params.append(_choice_param(name, text, hint, raw))
    if not params:
        raise ConfigError(f"space: {_SPEC_HELP}, at least one. Received none")
    names = {p.name for p in params}
    hidden = next((p for p in params if p.name == "hidden"), None)
    if "layers" in names and hidden and not hidden.is_range:
        if any(len(v) != 1 for v in hidden.values):
            raise ConfigError(
                "space: expected hidden as one layer's width with layers. Received: "
                f"{hidden.spec!r}"
            )
    return params


def _range_param(name, text, hint, low_text, high_text, options) -> Param:
    flags = [o.strip() for o in options.split(":") if o.strip()]
    unknown = [f for f in flags if f not in ("log", "int")]
    if unknown:
        raise ConfigError(f"space: {_SPEC_HELP}. Received: {text!r}")
    base = _base_hint(hint)
    integer_field = base is int or name in ("hidden", "layers")
    if not (integer_field or base is float):
        raise ConfigError(
            f"space: {name}: expected choices (A,B,C) for a field that is not a number. "
            f"Received: {text!r}"
        )
    if "int" in flags and not integer_field:
        raise ConfigError(
            f"space: {name}: expected :int only for an integer field. Received: {text!r}"
        )
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        raise ConfigError(
            f"space: {name}: expected numbers LOW..HIGH. Received: {text!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ConfigError(f"space: {name}: expected LOW < HIGH. Received: {text!r}")
    if integer_field and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"space: {name}: expected integer bounds. Received: {text!r}")
    log = "log" in flags
    if log and low <= 0:
        raise ConfigError(f"space: {name}: expected LOW > 0 on a log scale. Received: {text!r}")
    return Param(name, text, low=low, high=high, log=log, integer=integer_field)


def _choice_param(name, text, hint, raw) -> Param:
    texts = tuple(dict.fromkeys(part.strip() for part in raw.split(",")))
    if any(not part for part in texts):
        raise ConfigError(f"space: {name}: expected comma-separated choices. Received: {text!r}")
    try:
        values = tuple(_convert(name, hint, part) for part in texts)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("assignments:", "space:", 1)) from None
    return Param(name, text, texts=texts, values=values)


def _base_hint(hint):
    args = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    return args[0] if len(args) == 1 and hint not in (int, float, str, bool) else hint


def suggest_overrides(trial, space: Sequence[Param], base: TrainConfig) -> dict:
    """The config overrides ``trial`` suggests for ``space``."""
    values = {}
    for p in space:
        if not p.is_range:
            values[p.name] = p.values[
                p.texts.index(trial.suggest_categorical(p.name, list(p.texts)))
            ]
        elif p.integer:
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
    return space_overrides(values, base)


def space_overrides(values: dict, base: TrainConfig) -> dict:
    """Searched values (``hidden`` as a width, ``layers``) as TrainConfig overrides."""
    overrides = dict(values)
    hidden = overrides.pop("hidden", None)
    layers = overrides.pop("layers", None)
    if isinstance(hidden, int):
        hidden = (hidden,)
    if layers is not None:
        hidden = ((hidden or base.hidden)[0],) * layers
    if hidden is not None:
        overrides["hidden"] = tuple(hidden)
    return overrides
