"""A sweep's grid: ``FIELD=V1,V2`` assignments, their combinations, the configs
they make, and the stable key that names each trial's record.

:func:`trial_key` must never change what it computes: it names the files of
existing sweep folders, which resume by it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import typing
from collections.abc import Iterable, Sequence

import numpy as np

from digitlab import data as data_module
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError
from digitlab.experiments._models import check_model_name


def parse_assignment(text: str) -> tuple[str, list]:
    """Parse ``FIELD=V1,V2,...`` into a TrainConfig field and its values.

    Values are converted to the field's type; ``hidden`` takes layer sizes
    joined by ``+`` (``hidden=256+128,512`` is two grid values) and
    ``learning_rate`` also takes ``default`` (the optimizer's own).  Raises
    :class:`ConfigError` naming the argument it feeds, :func:`build_grid`'s
    ``assignments``, for an unknown field or a value of the wrong type
    (``assignments: epochs: expected an integer...``).
    """
    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    fields = _config_fields()
    if not sep or not name:
        raise ConfigError(f"assignments: expected FIELD=VALUE[,VALUE...]. Received: {text!r}")
    if name not in fields:
        raise ConfigError(
            f"assignments: expected a field of {', '.join(fields)}. Received: {name!r}"
        )
    parts = [part.strip() for part in raw.split(",")]
    if not raw.strip() or any(not part for part in parts):
        raise ConfigError(
            f"assignments: {name}: expected comma-separated values. Received: {raw!r}"
        )
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
            raise ConfigError(f"assignments: expected each field once. Received {name} twice")
        seen.add(name)
    if hidden is not None or layers is not None:
        if "hidden" in seen:
            raise ConfigError(
                "assignments: expected either hidden/layers or an assignment of hidden. "
                "Received both"
            )
        base = base or TrainConfig()
        widths = _unique(hidden) if hidden is not None else [base.hidden[0]]
        depths = _unique(layers) if layers is not None else [len(base.hidden)]
        for argument, values in (("hidden", widths), ("layers", depths)):
            for value in values:
                if not _positive_int(value):
                    raise ConfigError(
                        f"{argument}: expected positive integers. Received: {value!r}"
                    )
        axes.append(("hidden", [(width,) * depth for depth in depths for width in widths]))
    axes.extend((name, list(values)) for name, values in assignments)
    if seeds is not None:
        if "seed" in seen:
            raise ConfigError(
                "assignments: expected either seeds or an assignment of seed. Received both"
            )
        if not _positive_int(seeds):
            raise ConfigError(f"seeds: expected a positive integer. Received: {seeds!r}")
        axes.append(("seed", list(range(seeds))))
    seed_axis = [axis for axis in axes if axis[0] == "seed"]
    axes = [axis for axis in axes if axis[0] != "seed"] + seed_axis  # seeds vary fastest
    names = [name for name, _ in axes]
    combos = itertools.product(*(values for _, values in axes))
    return [dict(zip(names, combo, strict=True)) for combo in combos]


def grid_configs(base: TrainConfig, grid: Sequence[dict]) -> list[TrainConfig]:
    """``dataclasses.replace(base, **overrides)`` for each grid point, validated
    up front (an invalid value or model name fails before any training)."""
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


def varied_fields(configs: Sequence[TrainConfig]) -> list[str]:
    """The config fields whose value differs between ``configs``, in field order."""
    if not configs:
        return []
    dicts = [config.to_dict() for config in configs]
    return [
        name for name in dicts[0] if len({json.dumps(d[name], sort_keys=True) for d in dicts}) > 1
    ]


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
        raise ConfigError(f"assignments: {name}: expected {kind}. Received: {text!r}") from None
    raise ConfigError(
        f"assignments: {name}: expected a field that takes text values. Received: {text!r}"
    )


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _unique(values: Iterable) -> list:
    return list(dict.fromkeys(values))
