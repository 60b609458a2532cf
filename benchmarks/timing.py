"""Timing shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this imports as ``timing``)."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeat: int, warmup: bool = True) -> float:
    """Median wall time of ``repeat`` calls of ``fn``, after one untimed call when ``warmup``."""
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
