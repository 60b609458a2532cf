"""The default thread count of a run (archdsl/runner/threads.py): the usable cores less the busy ones."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from archdsl.runner import threads


class Measured:
    """A sampler that measured ``busy`` cores of other work."""

    def __init__(self, busy: float | None) -> None:
        self.busy = busy

    def others_busy(self) -> float | None:
        return self.busy


@pytest.mark.parametrize(("text", "cores"), [
    ("200000 100000\n", 2), ("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", None), ("", None),
    ("x y\n", None), ("100 0\n", None),
])  # fmt: skip
def test_a_cgroups_cpu_quota_is_read_in_whole_cores(tmp_path, text, cores):
    (tmp_path / "cpu.max").write_text(text)
    assert threads.cgroup_quota(tmp_path / "cpu.max") == cores
    assert threads.cgroup_quota(tmp_path / "absent") is None


@pytest.mark.parametrize(("busy", "count", "reason"), [
    (0.0, 4, "4 cores, none busy with other work"),
    (0.4, 4, "4 cores, none busy with other work"),
    (1.2, 3, "4 cores, 1 busy with other work"),
    (3.6, 1, "4 cores, 4 busy with other work"),
    (None, 4, "4 cores"),  # no /proc/stat: the cores
])  # fmt: skip
def test_the_default_is_the_cores_that_other_work_leaves(monkeypatch, busy, count, reason):
    monkeypatch.setattr(threads, "usable_cores", lambda: (4, "cores"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert threads.default_choice(Measured(busy)) == threads.Choice(count, reason)


def test_the_default_is_never_more_than_torchs_count_and_shared_under_torchrun(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: (4, "cores"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert threads.default_choice(Measured(0.0)) == threads.Choice(2, "torch's thread count; 4 cores, none busy with "
                                                                      "other work")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert threads.default_choice(None, local_processes=3) == threads.Choice(1, "4 cores shared by 3 processes")
    assert threads.Choice(1, "--threads").describe() == "1 thread (--threads)"
    assert threads.Choice(2, "--threads").describe() == "2 threads (--threads)"


@pytest.mark.skipif(not threads.PROC_STAT.exists(), reason="needs /proc/stat")
def test_a_busy_process_beside_the_run_counts_as_other_work():
    hog = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        sampler = threads.Sampler()
        time.sleep(0.5)
        assert sampler.others_busy() >= 0.7  # the hog's core, at least
    finally:
        hog.kill()
        hog.wait()


def test_using_gives_the_threads_back():
    before = torch.get_num_threads()
    with threads.using(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
