"""Timing helpers shared by the benchmark suites."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import jax


def time_cold_warm(fn: Callable[[], object], repeats: int = 3,
                   statistic: Callable[[list[float]], float] = statistics.median) -> tuple[float, float]:
    """(cold, warm) wall times in seconds of ``fn()``; cold includes tracing and compilation.

    ``fn`` must return JAX arrays (blocked on with ``jax.block_until_ready``). Warm is the median
    (or ``statistic``, e.g. ``min``) of ``repeats`` calls after the first.
    """
    start = time.perf_counter()
    jax.block_until_ready(fn())
    cold = time.perf_counter() - start
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        warm.append(time.perf_counter() - start)
    return cold, statistic(warm)


def time_reference(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time in seconds of a NumPy/PySCF call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
