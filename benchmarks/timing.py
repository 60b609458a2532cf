"""Timing shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this imports as ``timing``)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ARCHDSL = str(Path(sys.executable).with_name("archdsl"))  # the installed command beside this Python


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


def command_time(argv: list[str], repeat: int) -> float:
    """Median wall time of running ``argv`` as a whole process (output discarded), after a warm-up run."""

    def run() -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return median_seconds(run, repeat)
