"""The run folder on a shared machine: a folder is taken for a run only when its marker proves it is
one, one process at a time writes it (a second is refused with the holder's PID), run.json and
metrics.csv are validated field by field, and Ctrl-C only offers a --resume that can work."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_runner_support import REPO, Holder, tiny_network, tiny_npz

from archdsl.errors import UsageError
from archdsl.runner import checkpoint, datasets, runfolder, train
from archdsl.runner.options import TrainOptions

TINY = TrainOptions(epochs=1, batch_size=20, lr=0.05, device="cpu")


def options(tmp_path: Path, out: Path, **changes) -> TrainOptions:
    data = tmp_path / "tiny.npz"
    if not data.exists():
        tiny_npz(data)
    return TINY.replace(data=str(data), out=str(out), **changes)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def run(tmp_path) -> Path:
    """A finished one-epoch run of the tiny network on tiny data."""
    train.start(tiny_network(), options(tmp_path, tmp_path / "run"), stream=io.StringIO())
    return tmp_path / "run"


@pytest.fixture
def holder():
    held = []
    yield lambda folder: held.append(Holder(folder)) or held[-1]
    for one in held:
        one.close()


def test_a_folder_holding_the_users_own_spec_is_never_taken(tmp_path):
    """Without the marker, a lone spec.arch is the user's spec, not an unfinished run's copy of one."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "spec.arch").write_text("network mine : [1, 8, 8] = flatten; linear 3\n")
    with pytest.raises(UsageError) as caught:
        train.start(tiny_network(), options(tmp_path, project), stream=io.StringIO())
    assert caught.value.message == f"{project} already holds files; a new run needs an empty or new folder"
    assert caught.value.hint == "choose another --out"  # no --resume: it is not a run
    assert snapshot(project) == {"spec.arch": b"network mine : [1, 8, 8] = flatten; linear 3\n"}


def test_the_cli_never_overwrites_the_spec_it_trains_from(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    spec = project / "spec.arch"
    spec.write_text("network mine : [1, 8, 8] -> [3] = flatten; linear 3\n")
    before = spec.read_bytes()
    result = CliRunner().invoke(__import__("archdsl.cli").cli.app, [
        "train", str(spec), "--data", str(tiny_npz(tmp_path / "tiny.npz")), "--device", "cpu", "--out", str(project)])
    assert result.exit_code == 1, result.output
    assert f"{project}: error: {project} already holds files" in result.output
    assert spec.read_bytes() == before and sorted(p.name for p in project.iterdir()) == ["spec.arch"]


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, run, holder):
    held = holder(run)
    before = snapshot(run)
    with pytest.raises(UsageError) as caught:
        train.resume(tiny_network(), run, epochs=2, stream=io.StringIO())
    assert caught.value.message == f"{run} is in use by process {held.process.pid}, which is writing that run"
    assert caught.value.hint == "wait for it to finish or stop it; one run folder takes one writer at a time"
    # A new run into a folder whose creation another process holds is refused the same way.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    held_fresh = holder(fresh)
    with pytest.raises(UsageError, match=f"is in use by process {held_fresh.process.pid}"):
        train.start(tiny_network(), options(tmp_path, fresh), stream=io.StringIO())
    assert sorted(p.name for p in fresh.iterdir()) == [runfolder.MARKER]
    held.close()
    held_fresh.close()
    assert snapshot(run) == before  # the refused resume wrote and pruned nothing
    assert train.resume(tiny_network(), run, epochs=2, stream=io.StringIO()).final.epoch == 2  # free again


def test_runs_started_together_into_one_folder_leave_one_run(tmp_path):
    """Before the lock, several runs into one --out all "succeeded" and all but one were silently lost."""
    out = tmp_path / "run"
    run_options = options(tmp_path, out)
    start = threading.Barrier(4)
    results, refusals = [], []

    def one_run() -> None:
        start.wait()
        try:
            results.append(train.start(tiny_network(), run_options, stream=io.StringIO()))
        except UsageError as err:
            refusals.append(err.message)

    threads = [threading.Thread(target=one_run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 1, refusals
    assert len(refusals) == 3
    assert all(f"is in use by process {os.getpid()}" in message or "already holds files" in message
               for message in refusals), refusals
    assert (out / "metrics.csv").read_text().count("\n") == 2
    assert checkpoint.latest(out).epoch == 1


def test_a_link_planted_as_the_marker_is_refused_and_not_followed(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    victim = tmp_path / "victim"
    (folder / runfolder.MARKER).symlink_to(victim)
    with pytest.raises(UsageError) as caught, runfolder.claim(folder):
        pass
    assert caught.value.message == f"cannot lock the run folder with {runfolder.MARKER}: it is a symbolic link"
    assert not victim.exists()


def test_the_lock_goes_with_the_process(tmp_path):
    """flock, not a lock file's existence: a process killed while holding it leaves nothing stale."""
    folder = tmp_path / "run"
    folder.mkdir()
    killed = ("import os\nfrom pathlib import Path\nfrom archdsl.runner import runfolder\n"
              f"with runfolder.claim(Path({str(folder)!r})):\n    os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", killed], cwd=REPO, check=False).returncode == 9
    with runfolder.claim(folder):
        assert (folder / runfolder.MARKER).read_text() == f"archdsl run folder, locked by process {os.getpid()}\n"


def edit_run_json(run: Path, change) -> None:
    record = json.loads((run / "run.json").read_text())
    change(record)
    (run / "run.json").write_text(json.dumps(record))


def set_path(record: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        record = record[key]
    if value is KeyError:
        del record[last]
    else:
        record[last] = value


@pytest.mark.parametrize(("path", "value", "problem"), [
    ("options.batch_size", 64.5, "options.batch_size: input should be a valid integer (got 64.5)"),
    ("options.data", 5, "options.data: input should be a valid string (got 5)"),
    ("options.epochs", "3", "options.epochs: input should be a valid integer (got '3')"),
    ("options.lr", -1.0, "options: --lr must be positive, got -1.0"),
    ("options.colour", "red", "options.colour: extra inputs are not permitted (got 'red')"),
    ("normalization.std", [], "normalization: mean and std need one value per channel of data.image_shape"),
    ("normalization.std", [0.0], "normalization.std[0]: input should be greater than 0 (got 0.0)"),
    ("normalization", KeyError, "normalization: field required"),
    ("spec_hash", "x", "spec_hash: string should match pattern '^[0-9a-f]{64}$' (got 'x')"),
    ("data.image_shape", [1, 8], "data.image_shape[2]: field required"),
    ("data.sha256", "x", "data.sha256: string should match pattern '^[0-9a-f]{64}$' (got 'x')"),
    ("options.threads", 0, "options: --threads must be at least 1, got 0"),
    ("options.allow_divergence", "yes", "options.allow_divergence: input should be a valid boolean (got 'yes')"),
    ("format", 2, "format: input should be 1 (got 2)"),
])
def test_every_field_of_run_json_is_checked(run, path, value, problem):
    edit_run_json(run, lambda record: set_path(record, path, value))
    with pytest.raises(UsageError) as caught:
        runfolder.read(run)
    assert caught.value.message == f"run.json is damaged: {problem}"
    assert caught.value.file == str(run / "run.json")


@pytest.mark.parametrize("kind", ["device", "fifo", "huge"])
def test_a_run_json_that_is_not_a_plain_small_file_is_refused_unread(run, kind):
    path = run / "run.json"
    path.unlink()
    if kind == "device":
        path.symlink_to("/dev/zero")
        expected = "run.json is a character device, not a regular file; refusing to read it"
    elif kind == "fifo":
        os.mkfifo(path)  # opening it to read would wait for a writer forever
        expected = "run.json is a FIFO (named pipe), not a regular file; refusing to read it"
    else:
        with open(path, "wb") as handle:
            handle.truncate(50 << 30)  # sparse: 50 GB that take no space
        expected = f"run.json is {50 << 30:,} bytes, more than the run.json of a run can be ({16 << 20:,})"
    with pytest.raises(UsageError) as caught:
        runfolder.read(run)
    assert caught.value.message == expected


def test_metrics_csv_must_agree_with_the_checkpoint(run):
    lines = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\n".join([lines[0], lines[1].replace("1,", "1,9", 1)]) + "\n")
    with pytest.raises(UsageError) as caught:
        train.resume(tiny_network(), run, epochs=2, stream=io.StringIO())
    assert caught.value.message == (
        "metrics.csv does not match the checkpoint of epoch 1 (epoch-0001.state.pt): its row of epoch 1 differs")
    (run / "metrics.csv").write_text(lines[0] + "\n")
    with pytest.raises(UsageError, match=r"\(epoch-0001.state.pt\): it has rows for 0 epochs\n"):
        train.resume(tiny_network(), run, epochs=2, stream=io.StringIO())
    # One row more than the checkpoint is a kill between metrics.csv and the checkpoint: resumed.
    (run / "metrics.csv").write_text("\n".join([lines[0], lines[1], lines[1].replace("1,", "2,", 1)]) + "\n")
    assert train.resume(tiny_network(), run, epochs=2, stream=io.StringIO()).final.epoch == 2


def test_a_resume_on_other_data_is_refused(tmp_path, run):
    np.savez(tmp_path / "tiny.npz", x_train=np.zeros((40, 8, 8), np.uint8), y_train=np.arange(40) % 3,
             x_test=np.zeros((30, 8, 8), np.uint8), y_test=np.arange(30) % 3)
    with pytest.raises(UsageError) as caught:
        train.resume(tiny_network(), run, epochs=2, stream=io.StringIO())
    assert caught.value.message == (
        f"tiny from {tmp_path / 'tiny.npz'} is not the data this run was trained on: "
        "train_examples 60 in run.json, 40 now")


def test_a_resume_on_data_of_the_same_sizes_but_other_pixels_is_refused(tmp_path, run):
    """run.json records the data's SHA-256: a copy that differs only in its pixels is other data."""
    with np.load(tmp_path / "tiny.npz") as arrays:
        changed = dict(arrays)
    changed["x_train"] = changed["x_train"].copy()
    changed["x_train"][0, 0, 0] ^= 1
    np.savez(tmp_path / "tiny.npz", **changed)
    with pytest.raises(UsageError) as caught:
        train.resume(tiny_network(), run, epochs=2, stream=io.StringIO())
    assert caught.value.message == (
        f"tiny from {tmp_path / 'tiny.npz'} is not the data this run was trained on: "
        "the images or labels differ from those whose SHA-256 run.json records")


def test_a_run_json_from_before_the_checksum_and_threads_still_resumes(run):
    def forget(record):
        del record["data"]["sha256"], record["options"]["threads"], record["options"]["allow_divergence"]

    edit_run_json(run, forget)
    assert train.resume(tiny_network(), run, epochs=2, stream=io.StringIO()).final.epoch == 2


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("moment", ["before the folder", "during the first epoch"])
def test_ctrl_c_offers_a_resume_only_for_a_folder_that_exists(tmp_path, monkeypatch, moment):
    from archdsl.cli import app

    spec = tmp_path / "tiny.arch"
    spec.write_text("network tiny : [1, 8, 8] -> [3] = flatten; linear 3\n")
    monkeypatch.setattr(*((datasets, "load") if moment == "before the folder" else (checkpoint, "save")), interrupt)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(spec), "--data", str(tiny_npz(tmp_path / "tiny.npz")),
                                      "--device", "cpu", "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 130
    if moment == "before the folder":
        assert result.output == ("archdsl: interrupted before the run folder was made; "
                                 "run the same command to start again\n")
        assert not out.exists()
    else:
        assert result.output.endswith(f"archdsl: interrupted; continue with: archdsl train {spec} --resume {out}\n")
        assert (out / "run.json").is_file()
