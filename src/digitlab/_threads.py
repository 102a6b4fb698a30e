"""How many threads BLAS may use, where results must not depend on it."""

from __future__ import annotations

import contextlib

_THREADPOOLS = None


def blas_threads(limit: int | None):
    """A context limiting BLAS to ``limit`` threads (None: no limit)."""
    global _THREADPOOLS
    if limit is None:
        return contextlib.nullcontext()
    if _THREADPOOLS is None:  # inspecting the loaded libraries takes milliseconds: once
        from threadpoolctl import ThreadpoolController

        _THREADPOOLS = ThreadpoolController()
    return _THREADPOOLS.limit(limits=limit, user_api="blas")
