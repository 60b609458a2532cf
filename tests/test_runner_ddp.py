"""The same run under torchrun with two gloo processes on 127.0.0.1 agrees with one process, and a job into
a run folder that another process holds is refused."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_runner_support import DATA_ROOT, FakeNetwork, Holder, tiny_npz

from archdsl.cli import app
from archdsl.runner import train
from archdsl.runner.options import TrainOptions

TESTS = Path(__file__).resolve().parent
OPTIONS = TrainOptions(epochs=2, batch_size=64, lr=0.05, momentum=0.9, data_dir=str(DATA_ROOT), limit=2000,
                       device="cpu", threads=1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="torchrun with gloo is tested on POSIX")
def test_two_gloo_processes_train_like_one(tmp_path):
    single = train.start(FakeNetwork(width=4), OPTIONS.replace(out=str(tmp_path / "single")), stream=io.StringIO())

    folder = tmp_path / "ddp"
    script = tmp_path / "worker.py"
    script.write_text(
        f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
        "from test_runner_support import FakeNetwork\n"
        "from archdsl.runner import train\n"
        "from archdsl.runner.options import TrainOptions\n"
        f"train.start(FakeNetwork(width=4), TrainOptions(**{OPTIONS.replace(out=str(folder)).to_json()!r}))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert done.returncode == 0, done.stderr[-4000:]

    # Rank 0 alone prints and writes: one line per epoch, one run folder.
    epoch_lines = [line for line in done.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split("  ")[0] for line in epoch_lines] == ["epoch 1/2", "epoch 2/2"]
    record = json.loads((folder / "run.json").read_text())
    assert record["environment"]["world_size"] == 2
    assert record["data"] == json.loads((single.run_dir / "run.json").read_text())["data"]

    # Each rank took half of every global batch, so the runs differ only by rounding.
    distributed = train.evaluate(FakeNetwork(width=4), folder)
    assert distributed.examples == 2000
    rows = (folder / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,train_acc,test_loss,test_acc,examples_per_s,seconds,lr"
    assert len(rows) == 3
    final = dict(zip(rows[0].split(","), map(float, rows[2].split(",")), strict=True))
    assert final["train_loss"] == pytest.approx(single.final.train_loss, rel=1e-3)
    assert final["test_loss"] == pytest.approx(single.final.test_loss, rel=1e-3)
    assert abs(final["test_acc"] - single.final.test_acc) <= 0.002
    assert abs(distributed.test_acc - single.final.test_acc) <= 0.002


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="torchrun with gloo is tested on POSIX")
def test_a_torchrun_job_into_a_folder_another_process_holds_is_refused(tmp_path):
    """Rank 0 alone takes the run folder's lock and alone writes; when the lock is another's, rank 0 is
    refused before writing and tells the other rank, which raises the same error. Nothing in either folder
    changes."""
    spec = tmp_path / "tiny.arch"
    spec.write_text("network tiny : [1, 8, 8] -> [3] = flatten; linear 3\n")
    data = tiny_npz(tmp_path / "tiny.npz")
    run, fresh = tmp_path / "run", tmp_path / "fresh"
    train_args = ["train", str(spec), "--epochs", "1", "--batch-size", "20", "--device", "cpu"]
    done = CliRunner().invoke(app, [*train_args, "--data", str(data), "--out", str(run)])
    assert done.exit_code == 0, done.output
    fresh.mkdir()
    holders = {run: Holder(run), fresh: Holder(fresh)}
    before = {p.name: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    jobs = {run: ["train", str(spec), "--resume", str(run), "--epochs", "2"],
            fresh: [*train_args, "--data", str(data), "--out", str(fresh)]}
    try:
        for folder, args in jobs.items():
            command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                       "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "archdsl", *args]
            done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            refusal = (f"{folder}: error: {folder} is in use by process {holders[folder].process.pid}, "
                       "which is writing that run")
            assert done.returncode != 0 and done.stderr.count(refusal) == 2, done.stderr[-4000:]  # one per rank
            assert "RuntimeError" not in done.stderr, done.stderr[-4000:]  # torchrun's own report aside, no traceback
    finally:
        for holder in holders.values():
            holder.close()
    assert {p.name: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == before
    assert [p.name for p in fresh.iterdir()] == [".archdsl-run"]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="gloo is tested on POSIX")
def test_ranks_started_by_hand_all_learn_of_rank_0s_refusal(tmp_path):
    """Without torchrun to stop them (RANK and WORLD_SIZE set by hand), the other ranks used to wait for rank 0
    at their first collective and end in gloo's traceback; now each rank ends with rank 0's one error."""
    spec = tmp_path / "tiny.arch"
    spec.write_text("network tiny : [1, 8, 8] -> [3] = flatten; linear 3\n")
    data = tiny_npz(tmp_path / "tiny.npz")
    run = tmp_path / "run"
    done = CliRunner().invoke(app, ["train", str(spec), "--epochs", "1", "--batch-size", "20", "--device", "cpu",
                                    "--data", str(data), "--out", str(run)])
    assert done.exit_code == 0, done.output
    holder = Holder(run)
    port = free_port()
    try:
        ranks = [subprocess.Popen([sys.executable, "-m", "archdsl", "train", str(spec), "--resume", str(run),
                                   "--epochs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank),
                                       "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                       "MASTER_PORT": str(port)})
                 for rank in range(2)]
        outputs = [rank.communicate(timeout=240) for rank in ranks]
    finally:
        holder.close()
    refusal = (f"{run}: error: {run} is in use by process {holder.process.pid}, which is writing that run\n"
               "  hint: wait for it to finish or stop it; one run folder takes one writer at a time\n")
    for rank, (_, stderr) in zip(ranks, outputs, strict=True):
        assert (rank.returncode, stderr) == (1, refusal), stderr[-4000:]
