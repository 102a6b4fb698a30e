"""Ctrl-C and SIGTERM that always stop a command cleanly.

JAX runs Python callbacks of its own (``_xla_gc_callback``) from the garbage
collector; a ``KeyboardInterrupt`` raised inside one is printed and dropped,
and training goes on.  So the command line installs :func:`install`: while
a Keras fit runs (:func:`deferred`), the first SIGINT or SIGTERM is only
recorded, and the fit's callback raises it at the next batch (:func:`check`),
from plain Python code where nothing can swallow it.  A second signal, or one
outside a fit, raises at once.  Library users who do not call :func:`install`
keep Python's own behaviour.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` and cleanup runs."""


_state: dict = {"installed": False, "deferring": 0, "pending": None}


def _exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum, frame) -> None:
    if _state["deferring"] and _state["pending"] is None:
        _state["pending"] = signum
        return
    _state["pending"] = None
    raise _exception(signum)


def install() -> None:
    """Handle SIGINT and SIGTERM as described above (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    _state["installed"] = True


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """While inside, a first signal waits for :func:`check` (a fit's callback)."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
    check()


def check() -> None:
    """Raise the signal that arrived while deferred, if any."""
    signum = _state["pending"]
    if signum is not None:
        _state["pending"] = None
        raise _exception(signum)
