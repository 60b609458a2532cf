"""How many CPU threads a run gives torch: ``--threads N``, or the cores that are free when it starts.

torch's own default is one thread per core whether or not other processes use them. On a machine
with other load that is the slowest choice there is: torch's threads wait for each other at every
operation, and one of them waits for the core that the other process holds. On this project's
2-core machine, LeNet on Fashion-MNIST trained at 14,554 ex/s with one thread and 27,143 with two
while it was otherwise idle, but at 4,156-6,494 ex/s with one thread and 753-1,757 with two beside one
busy process (docs/training.md, "Threads").

So the default is the cores this process may use (its CPU affinity, and the quota of its cgroup in a
container), less those that other processes kept busy while the run loaded its data, and never
more than torch's own count (which ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` set). The count
changes the order of floating-point sums, so run.json records it and a resume or an eval takes the
run's own; two runs repeat bit for bit with the same ``--threads``.

Under torchrun the processes of one machine share its cores equally, without measuring: each
process would count its siblings, loading their data at the same moment, as other work.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
MIN_SAMPLE_S = 0.2  # at 100 ticks a second, enough ticks to tell a busy core from an idle one


@dataclass(frozen=True)
class Choice:
    """A thread count and why: ``2 threads (2 cores, none busy)``."""

    count: int
    reason: str

    def describe(self) -> str:
        return f"{self.count} thread{'s' if self.count != 1 else ''} ({self.reason})"


class Sampler:
    """The CPU time that other processes take while this one does something (loads its data).

    >>> sampler = Sampler()          # doctest: +SKIP
    >>> ...                          # read the data set
    >>> default_choice(sampler)      # doctest: +SKIP
    Choice(count=1, reason='2 cores, 1 busy with other work')
    """

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.own = _own_seconds()
        self.ticks = _cpu_ticks()

    def others_busy(self) -> float | None:
        """How many cores other processes kept busy since the start; None where /proc/stat is missing."""
        if self.ticks is None:
            return None
        time.sleep(max(0.0, MIN_SAMPLE_S - (time.monotonic() - self.began)))
        now = _cpu_ticks()
        if now is None:
            return None
        busy, total = now[0] - self.ticks[0], now[1] - self.ticks[1]
        if total <= 0:
            return None
        cores = os.cpu_count() or 1
        elapsed = max(time.monotonic() - self.began, 1e-9)
        own_cores = (_own_seconds() - self.own) / elapsed
        return max(0.0, busy / total * cores - own_cores)


def default_choice(sampler: Sampler | None, local_processes: int = 1) -> Choice:
    """The default thread count: see the module's docstring. ``sampler`` measured the others' load."""
    import torch

    cores, where = usable_cores()
    torch_count = torch.get_num_threads()
    if local_processes > 1:
        count = max(1, cores // local_processes)
        reason = f"{cores} {where} shared by {local_processes} processes"
    else:
        others = sampler.others_busy() if sampler is not None else None
        if others is None:
            count, reason = cores, f"{cores} {where}"
        else:
            busy = round(others)
            count = max(1, cores - busy)
            reason = f"{cores} {where}, {'none' if busy == 0 else busy} busy with other work"
    if torch_count < count:
        count, reason = torch_count, f"torch's thread count; {reason}"
    return Choice(count, reason)


def usable_cores() -> tuple[int, str]:
    """The cores this process may run on, and what limits them: its affinity or its cgroup's quota."""
    try:
        cores, where = len(os.sched_getaffinity(0)), "cores"
    except AttributeError:  # not Linux
        cores, where = os.cpu_count() or 1, "cores"
    quota = cgroup_quota()
    if quota is not None and quota < cores:
        cores, where = quota, "cores of the container's CPU quota"
    return cores, where


def cgroup_quota(path: Path = CGROUP_CPU_MAX) -> int | None:
    """The CPU quota of a cgroup v2 (``200000 100000`` is 2 cores), rounded up; None without one."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return max(1, math.ceil(int(quota) / int(period)))


@contextlib.contextmanager
def using(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` for a run, and back to what they were after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cpu_ticks() -> tuple[int, int] | None:
    """Busy and total ticks of all cores since boot, from the first line of /proc/stat."""
    try:
        fields = PROC_STAT.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if len(fields) < 8 or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal (guest time is counted in user already)
    values = [int(value) for value in fields[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system
