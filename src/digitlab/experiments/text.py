"""Small text helpers of the experiment tables and plots."""

from __future__ import annotations


def cell(value) -> str:
    """A config value as text: ``(64,64)`` for a tuple or list."""
    if isinstance(value, list | tuple):
        return "(" + ",".join(str(v) for v in value) + ")"
    return str(value)


def plural(count, word: str) -> str:
    """``1 layer``, ``2 layers``, ``1 seed``: ``word`` is the singular."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def megabytes(size) -> str:
    if size is None:
        return "–"
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB"


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
