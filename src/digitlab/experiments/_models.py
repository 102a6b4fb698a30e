"""The one place the experiments learn which model names exist: the model
registry (:mod:`digitlab.models.registry`, whose package registers the
built-in kinds on import)."""

from __future__ import annotations

from digitlab.models import registry


def model_names() -> tuple[str, ...]:
    """Every name ``TrainConfig.model`` accepts, the tutorial's first."""
    return registry.names()


def default_models() -> list[str]:
    """What ``compare`` trains when given no list: every model not marked slow."""
    return [kind.name for kind in registry.kinds() if not kind.slow]


def check_model_name(name: str) -> None:
    """Raise :class:`~digitlab.errors.ConfigError` listing the valid names
    unless ``name`` is one."""
    registry.get(name)
