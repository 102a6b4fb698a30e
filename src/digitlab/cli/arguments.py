"""The value types of the command line's flags: each refuses a bad value in one line."""

from __future__ import annotations

import argparse


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, e.g. 256,128. Received: {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, e.g. 256,128. Received: {text!r}"
        )
    return values


def _name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated model names, e.g. mlp,rf. Received: {text!r}"
        )
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer. Received: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer. Received: {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1]. Received: {text!r}")
    return value


def defaults_help(field: str, kinds, tutorial: str | None = None) -> str:
    """'(default: V; cnn: W, ...)': the tutorial's value, then the models' own."""
    from digitlab.config import TrainConfig

    def shown(value) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, tuple):
            return ",".join(map(str, value))
        return str(value)

    text = tutorial if tutorial is not None else shown(getattr(TrainConfig(), field))

    def own_default(kind) -> str:  # "30 on torch or 15 on keras" where engines differ
        if not any(field in fields for fields in kind.engines.values()):
            return shown(kind.defaults[field])
        each = (
            f"{shown(f.get(field, kind.defaults[field]))} on {e}" for e, f in kind.engines.items()
        )
        return " or ".join(each)

    own = [f"{kind.name}: {own_default(kind)}" for kind in kinds if field in kind.defaults]
    return f"(default: {text}{'; ' + ', '.join(own) if own else ''})"
