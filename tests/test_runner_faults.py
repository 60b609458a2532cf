"""Fault injection: SIGKILL a training run at many random moments, some in the middle of a save,
resume it each time, and check that it never loses more than the epoch in progress and ends with
the metrics.csv of a run that was never interrupted.

Each run is a process forked from a "zygote" that has already imported torch and matplotlib, so a
kill-and-resume costs the run's own work, not seconds of imports. In the zygote every atomic write
of a checkpoint prints a marker and pauses (inside the temporary file, and after the rename), so a
kill can be aimed at any step of a save. ARCHDSL_FAULT_KILLS sets the number of kills (8 in CI).
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_runner_support import DATA_ROOT, FakeNetwork

from archdsl.runner import checkpoint
from archdsl.runner.options import TrainOptions

TESTS = Path(__file__).resolve().parent
OPTIONS = TrainOptions(epochs=3, batch_size=50, lr=0.05, momentum=0.9, schedule="cosine",
                       data_dir=str(DATA_ROOT), limit=300, device="cpu", threads=1)
PAUSE_S = 0.05
SAVE_STEPS = ("written {w}", "replaced {w}", "written {s}", "replaced {s}", "written {m}", "replaced {m}")

ZYGOTE = f"""
import json, os, sys, time, traceback
from pathlib import Path
sys.path.insert(0, {str(TESTS)!r})
import torch, torch._dynamo, safetensors.torch  # what a run imports lazily: pay for it once
import matplotlib.figure, matplotlib.backends.backend_agg
from test_runner_support import FakeNetwork
from archdsl.runner import checkpoint, runfolder, train
from archdsl.runner.options import TrainOptions

def mark(text):
    os.write(1, (text + "\\n").encode())
    time.sleep({PAUSE_S})

real_write = checkpoint.write_atomic
def paused_write(path, write):
    def write_then_pause(tmp):
        write(tmp)
        mark("written " + path.name)
    real_write(path, write_then_pause)
    mark("replaced " + path.name)
checkpoint.write_atomic = paused_write

real_create = runfolder.create
def create(*args, **kwargs):
    real_create(*args, **kwargs)
    mark("ready")
runfolder.create = create

for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(log, 1)
        os.dup2(log, 2)
        out = open(1, "w", buffering=1, closefd=False)
        try:
            if job["resume"]:
                mark("ready")
                train.resume(FakeNetwork(kind="mlp"), Path(job["folder"]), stream=out)
            else:
                train.start(FakeNetwork(kind="mlp"), TrainOptions(**job["options"]), stream=out)
            mark("done")
            code = 0
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        os._exit(code)
    print(json.dumps({{"pid": pid}}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({{"exit": os.waitstatus_to_exitcode(status)}}), flush=True)
"""


class Zygote:
    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def run(self, log: Path, folder: Path, *, resume: bool, kill_when=None) -> tuple[int, list[str], float]:
        """Fork one run; SIGKILL it as soon as ``kill_when(lines, ready_at)`` says so. Returns its
        exit code (negative: the signal), the lines it wrote and its seconds from "ready" to the end."""
        job = {"log": str(log), "folder": str(folder), "resume": resume,
               "options": OPTIONS.replace(out=str(folder)).to_json()}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        pid = json.loads(self.process.stdout.readline())["pid"]
        ready_at = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            lines = log.read_text().splitlines() if log.exists() else []
            if ready_at is None and "ready" in lines:
                ready_at = time.monotonic()
            if "done" in lines or any(line.startswith("Traceback") for line in lines):
                break
            if kill_when is not None and ready_at is not None and kill_when(lines, ready_at):
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.002)
        code = json.loads(self.process.stdout.readline())["exit"]
        return code, log.read_text().splitlines(), time.monotonic() - (ready_at or time.monotonic())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def printed_epochs(lines: list[str]) -> int:
    """The last epoch the run reported finished (its line comes after its checkpoint)."""
    done = [int(line.split()[1].split("/")[0]) for line in lines if line.startswith("epoch ")]
    return max(done, default=0)


def metrics_without_timings(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in ("examples_per_s", "seconds")}
                for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_at_most_the_epoch_in_progress(tmp_path):
    kills = int(os.environ.get("ARCHDSL_FAULT_KILLS", "8"))
    rng = random.Random(20261122)
    zygote = Zygote()
    try:
        code, lines, run_seconds = zygote.run(tmp_path / "reference.log", tmp_path / "reference", resume=False)
        assert code == 0, "\n".join(lines)
        assert printed_epochs(lines) == OPTIONS.epochs
        expected = metrics_without_timings(tmp_path / "reference")

        runs, killed, mid_save, folder, started = 0, 0, 0, tmp_path / "run-0", False
        for attempt in range(3 * kills):
            if killed == kills:
                break
            saved = checkpoint.latest(folder).epoch if checkpoint.latest(folder) else 0
            if attempt % 2 == 0:
                # Aim at one step of a save still to come: inside a temporary file, or just after a rename.
                epoch = rng.randint(saved + 1, OPTIONS.epochs)
                stem = f"epoch-{epoch:04d}"
                target = rng.choice(SAVE_STEPS).format(w=f"{stem}.safetensors", s=f"{stem}.state.pt",
                                                       m=f"{stem}.json")
                kill_when = lambda lines, ready_at, target=target: target in lines
            else:
                delay = rng.uniform(0, 0.9 * run_seconds * (OPTIONS.epochs - saved) / OPTIONS.epochs)
                kill_when = lambda lines, ready_at, delay=delay: time.monotonic() - ready_at >= delay
            log = tmp_path / f"attempt-{attempt}.log"
            code, lines, _ = zygote.run(log, folder, resume=started, kill_when=kill_when)
            started = True
            after = checkpoint.latest(folder).epoch if checkpoint.latest(folder) else 0
            context = f"attempt {attempt} on {folder.name}: " + " | ".join(lines[-4:])
            if code != 0:
                assert code == -signal.SIGKILL, context
                killed += 1
                mid_save += attempt % 2 == 0
                # Nothing that finished is lost, and only the epoch in progress is redone.
                assert after >= max(saved, printed_epochs(lines)), context
                assert after <= max(saved, printed_epochs(lines)) + 1, context
            if code == 0 or after == OPTIONS.epochs:  # finished (a kill after its last checkpoint included)
                check_finished(folder, expected)
                runs, folder, started = runs + 1, tmp_path / f"run-{runs + 1}", False
        if started:
            code, lines, _ = zygote.run(tmp_path / "last.log", folder, resume=True)
            assert code == 0, "\n".join(lines)
            check_finished(folder, expected)
    finally:
        zygote.close()
    assert killed == kills and mid_save >= kills // 2


def check_finished(folder: Path, expected: list[dict[str, str]]) -> None:
    """Same metrics as the uninterrupted run, and a last checkpoint that loads.

    A kill after the last manifest but before the pruning leaves older files; they are ignored."""
    assert metrics_without_timings(folder) == expected, folder.name
    final = checkpoint.latest(folder)
    net = FakeNetwork(kind="mlp")
    model = net.build()
    assert checkpoint.load_state(final, model, spec=checkpoint.spec_hash(net), trained_from="").epoch == OPTIONS.epochs
    checkpoint.load_weights(model, final, spec=checkpoint.spec_hash(net), trained_from="")
