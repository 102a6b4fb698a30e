"""What every benchmark reports about the machine it ran on."""

from __future__ import annotations

import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe(*packages: str) -> str:
    """One line: CPU, cores, Python and the named packages' versions."""
    found = []
    for name in packages:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return (
        f"machine: {cpu_name()} | {os.cpu_count()} cores | Python "
        f"{platform.python_version()} | " + ", ".join(found)
    )


def matmul_rate(hidden: int = 128, *, batch: int = 2048, seconds: float = 1.5) -> float:
    """float32 GFLOP/s NumPy reaches on one dense layer's three training products
    (forward, weight gradient, input gradient) for 784 -> ``hidden``.

    A large batch measures the rate the arithmetic could run at; the
    training's own batch of 128 adds per-call overhead that the floor should
    not include.
    """
    rng = np.random.default_rng(0)
    x = rng.random((batch, 784), dtype=np.float32)
    w = rng.random((784, hidden), dtype=np.float32)
    g = rng.random((batch, hidden), dtype=np.float32)
    flops = 3 * 2 * batch * 784 * hidden
    rounds, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x @ w
        x.T @ g
        g @ w.T
        rounds += 1
    return rounds * flops / (time.perf_counter() - start) / 1e9


def floor_seconds(params: int, images: int, rate_gflops: float) -> float:
    """Arithmetic floor of one epoch: 6 x parameters x images / rate."""
    return 6 * params * images / (rate_gflops * 1e9)


def best_seconds(function, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``function()``, after one
    untimed call (warm-up, compilation)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)
