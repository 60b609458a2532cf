"""Checkpoints from others: a flipped byte, a planted pickle, a wrong shape or NaN weights, a state
whose fields are of the wrong type or disagree with the checkpoint, a file that is not a plain file
or is larger than the network's checkpoint can be, are each refused with one clear error naming the
file (and the tensor or field), from the API and from the CLI. A disk that fills up while a
checkpoint is written is one error too, and the previous checkpoint survives."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import file_size_limit
from safetensors.torch import save_file
from test_runner_support import DATA_ROOT
from torch import nn

import archdsl
from archdsl.cli import app
from archdsl.errors import UsageError
from archdsl.runner import checkpoint, train
from archdsl.runner.options import TrainOptions
from archdsl.runner.runfolder import SpecArgs

SPEC = "network tiny : [1, 28, 28] -> [10] = flatten; linear 16; relu; linear 10\n"
TRAINED_FROM = "it was trained from `tiny.arch`"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def row(epoch: int) -> dict:
    return {"epoch": epoch, "train_loss": 0.5, "train_acc": 0.8, "test_loss": 0.6, "test_acc": 0.7,
            "examples_per_s": 1000.0, "seconds": 1.5, "lr": 0.1}


def saved(folder: Path, model: nn.Module, epoch: int = 1) -> checkpoint.Checkpoint:
    """A checkpoint of ``model`` as the runner writes it, without training."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = {"epoch": epoch, "step": 10, "optimizer": optimizer.state_dict(), "scaler": {},
             "history": [row(e) for e in range(1, epoch + 1)]}
    return checkpoint.save(folder, model, state, spec="S", network="tiny")


def rewrite_manifest(found: checkpoint.Checkpoint) -> None:
    """What someone handing over a doctored run would do: make the manifest agree with the new files."""
    manifest = json.loads(found.manifest.read_text())
    manifest["sha256"] = {name: sha256(found.weights.parent / name) for name in manifest["sha256"]}
    found.manifest.write_text(json.dumps(manifest))


def load_weights(found: checkpoint.Checkpoint, model: nn.Module) -> None:
    checkpoint.load_weights(model, found, spec="S", trained_from=TRAINED_FROM)


def load_state(found: checkpoint.Checkpoint) -> checkpoint.TrainingState:
    return checkpoint.load_state(found, mlp(), spec="S", trained_from=TRAINED_FROM)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))


def test_a_checkpoint_round_trips_with_its_manifest(tmp_path):
    model = mlp()
    found = saved(tmp_path, model, epoch=3)
    assert checkpoint.latest(tmp_path) == found
    assert sorted(p.name for p in found.weights.parent.iterdir()) == [
        "epoch-0003.json", "epoch-0003.safetensors", "epoch-0003.state.pt"]
    manifest = json.loads(found.manifest.read_text())
    assert manifest == {"format": 1, "epoch": 3, "sha256": {
        "epoch-0003.safetensors": sha256(found.weights), "epoch-0003.state.pt": sha256(found.state)}}
    fresh = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    load_weights(found, fresh)
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    assert load_state(found).step == 10


def test_tied_weights_load_through_their_one_stored_name(tmp_path):
    model = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False))
    model[1].weight = model[0].weight  # safetensors stores one name of the pair
    found = saved(tmp_path, model)
    fresh = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False))
    fresh[1].weight = fresh[0].weight
    load_weights(found, fresh)
    assert torch.equal(fresh[1].weight, model[0].weight)


@pytest.mark.parametrize("slot", ["weights", "state"])
def test_one_flipped_byte_is_refused_naming_the_file(tmp_path, slot):
    found = saved(tmp_path, mlp())
    path = getattr(found, slot)
    recorded = sha256(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(UsageError) as caught:
        load_weights(found, mlp()) if slot == "weights" else load_state(found)
    assert caught.value.file == str(path)
    assert caught.value.message == (
        f"{path.name} has changed since it was written: its SHA-256 is {sha256(path)[:16]}..., "
        f"the manifest epoch-0001.json recorded {recorded[:16]}...")


class Planted:
    """Unpickling this writes a file: the proof that a loader ran code from the checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.mark.parametrize("container", ["pickle", "torch.save"])
def test_a_planted_pickle_in_the_state_slot_never_runs(tmp_path, container):
    found = saved(tmp_path, mlp())
    marker = tmp_path / "marker"
    payload = {"epoch": 1, "spec_hash": "S", "optimizer": Planted(marker)}
    if container == "pickle":
        found.state.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, found.state)
    assert not marker.exists()  # writing the file ran nothing

    with pytest.raises(UsageError, match="has changed since it was written"):
        load_state(found)  # as planted: the manifest does not know these bytes
    rewrite_manifest(found)
    with pytest.raises(UsageError) as caught:
        load_state(found)  # with a manifest that agrees: weights_only refuses the object
    assert caught.value.file == str(found.state)
    assert caught.value.message.startswith(
        "epoch-0001.state.pt holds more than tensors and plain data; refused, since loading it could run code")
    assert "weights_only=False" not in caught.value.render()  # no advice to do the dangerous thing
    assert not marker.exists()


def doctored(found: checkpoint.Checkpoint, change) -> None:
    """Rewrite the weights with ``change`` applied to their tensors, keeping the metadata, and re-hash."""
    from safetensors.torch import load_file

    tensors = load_file(found.weights)
    change(tensors)
    save_file(tensors, found.weights, metadata={"archdsl_spec_hash": "S", "network": "tiny", "epoch": "1"})
    rewrite_manifest(found)


def test_a_tensor_of_the_wrong_shape_is_refused_naming_both_shapes(tmp_path):
    found = saved(tmp_path, mlp())
    doctored(found, lambda t: t.update({"1.weight": torch.zeros(16, 783)}))
    with pytest.raises(UsageError) as caught:
        load_weights(found, mlp())
    assert caught.value.message == (
        "tensor '1.weight' in epoch-0001.safetensors has shape [16, 783], the network's has shape [16, 784]")
    assert caught.value.file == str(found.weights)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, bad):
    found = saved(tmp_path, mlp())

    def poison(tensors):
        tensors["3.bias"][7] = bad

    doctored(found, poison)
    model = mlp()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with pytest.raises(UsageError) as caught:
        load_weights(found, model)
    assert caught.value.message == "tensor '3.bias' in epoch-0001.safetensors holds NaN or infinite values"
    assert caught.value.file == str(found.weights)
    assert all(torch.equal(model.state_dict()[name], t) for name, t in before.items())  # nothing half-loaded


def test_missing_and_foreign_tensors_are_refused(tmp_path):
    found = saved(tmp_path, mlp())
    doctored(found, lambda t: t.pop("3.bias"))
    with pytest.raises(UsageError) as caught:
        load_weights(found, mlp())
    assert caught.value.message == "epoch-0001.safetensors lacks tensors of the network: 3.bias"
    doctored(found, lambda t: t.update({"3.bias": torch.zeros(10), "9.extra": torch.zeros(1)}))
    with pytest.raises(UsageError) as caught:
        load_weights(found, mlp())
    assert caught.value.message == "epoch-0001.safetensors holds tensors the network does not have: 9.extra"


def test_a_damaged_or_missing_manifest_is_refused(tmp_path):
    found = saved(tmp_path, mlp())
    found.manifest.write_text('{"format": 1, "sha256": ')
    with pytest.raises(UsageError) as caught:
        load_state(found)
    assert caught.value.message.startswith("the manifest epoch-0001.json is damaged: invalid JSON: EOF while parsing")
    assert caught.value.file == str(found.manifest)
    found.manifest.unlink()
    assert checkpoint.latest(tmp_path) is None  # files without a manifest are an interrupted save


def test_a_save_prunes_older_epochs_and_leftover_temporaries(tmp_path):
    saved(tmp_path, mlp(), epoch=1)
    folder = tmp_path / "checkpoints"
    (folder / ".epoch-0002.safetensors.12345.tmp").write_bytes(b"half a file")
    (folder / ".epoch-0002.safetensors.k3x9.tmp").mkdir()  # a writer's staging folder
    (folder / ".epoch-0002.safetensors.k3x9.tmp" / "epoch-0002.safetensors").write_bytes(b"half a file")
    (folder / "epoch-0002.safetensors").write_bytes(b"weights of a save killed before its manifest")
    (folder / "notes.txt").write_text("not ours")
    found = saved(tmp_path, mlp(), epoch=3)
    assert sorted(p.name for p in folder.iterdir()) == [
        "epoch-0003.json", "epoch-0003.safetensors", "epoch-0003.state.pt", "notes.txt"]
    assert checkpoint.latest(tmp_path) == found


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> tuple[Path, Path]:
    """A one-epoch run of a real spec, for the commands that load run folders."""
    folder = tmp_path_factory.mktemp("real")
    spec = folder / "tiny.arch"
    spec.write_text(SPEC)
    options = TrainOptions(epochs=1, batch_size=50, lr=0.05, data_dir=str(DATA_ROOT), limit=200,
                           device="cpu", out=str(folder / "run"))
    train.start(archdsl.load(spec), options, spec=SpecArgs(path=str(spec)), stream=io.StringIO())
    return spec, folder / "run"


@pytest.fixture
def run_copy(real_run, tmp_path) -> tuple[Path, Path]:
    spec, run = real_run
    shutil.copytree(run, tmp_path / "run")
    return spec, tmp_path / "run"


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x80
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("command", ["eval", "export", "resume"])
def test_the_cli_refuses_a_tampered_checkpoint_in_one_line_and_exit_1(run_copy, tmp_path, command):
    spec, run = run_copy
    weights = run / "checkpoints" / "epoch-0001.safetensors"
    flip_a_byte(weights)
    args = {
        "eval": ["eval", spec, "--checkpoint", run],
        "export": ["export", spec, "--to", "torchscript", "-o", tmp_path / "tiny.pt", "--checkpoint", run],
        "resume": ["train", spec, "--resume", run, "--epochs", "2"],
    }[command]
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # the command group's report, not an escaping exception
    assert f"{weights}: error: epoch-0001.safetensors has changed since it was written" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "tiny.pt").exists()


def test_resume_refuses_a_planted_pickle_and_the_marker_never_appears(run_copy, tmp_path):
    spec, run = run_copy
    found = checkpoint.latest(run)
    marker = tmp_path / "marker"
    found.state.write_bytes(pickle.dumps({"epoch": 1, "optimizer": Planted(marker)}))
    rewrite_manifest(found)
    result = CliRunner().invoke(app, ["train", str(spec), "--resume", str(run), "--epochs", "2"])
    assert result.exit_code == 1, result.output
    assert f"{found.state}: error: epoch-0001.state.pt holds more than tensors and plain data" in result.output
    assert not marker.exists()
    assert checkpoint.latest(run) == found  # and the run folder keeps its checkpoint


def doctored_state(found: checkpoint.Checkpoint, change) -> None:
    """Rewrite the state with ``change`` applied, and a manifest that agrees (a run folder from someone
    else carries its own manifest)."""
    state = torch.load(found.state, weights_only=True)
    change(state)
    torch.save(state, found.state)
    rewrite_manifest(found)


@pytest.mark.parametrize(("change", "problem"), [
    (lambda s: s.update(epoch=-3), "epoch: input should be greater than or equal to 1 (got -3)"),
    (lambda s: s.update(epoch="abc"), "epoch: input should be a valid integer (got 'abc')"),
    (lambda s: s.update(epoch=2), "it says epoch 2, but it is the checkpoint of epoch 1"),
    (lambda s: s.pop("optimizer"), "optimizer: field required"),
    (lambda s: s["history"][0].pop("lr"), "history[0].lr: field required"),
    (lambda s: s.update(step=float("nan")), "step: input should be a valid integer (got nan)"),
    (lambda s: s.update(step=-1), "step: input should be greater than or equal to 0 (got -1)"),
    (lambda s: s.update(history=[row(2)]), "its metrics are of epochs 2, not of epochs 1 to 1"),
    (lambda s: s.update(scaler={"scale": float("inf")}), "scaler.scale: input should be a finite number (got inf)"),
    (lambda s: s["optimizer"]["param_groups"][0].update(params="all"),
     "optimizer.param_groups[0].params: input should be a valid list (got 'all')"),
])
def test_every_field_of_the_state_is_checked(tmp_path, change, problem):
    found = saved(tmp_path, mlp())
    doctored_state(found, change)
    with pytest.raises(UsageError) as caught:
        load_state(found)
    assert caught.value.message == f"epoch-0001.state.pt is damaged: {problem}"
    assert caught.value.file == str(found.state)


def test_weights_of_another_epoch_are_refused(tmp_path):
    found = saved(tmp_path, mlp(), epoch=2)
    (tmp_path / "other").mkdir()
    other = saved(tmp_path / "other", mlp(), epoch=1)
    shutil.copyfile(other.weights, found.weights)
    rewrite_manifest(found)
    with pytest.raises(UsageError) as caught:
        load_weights(found, mlp())
    assert caught.value.message == ("epoch-0002.safetensors is damaged: it holds the weights of epoch 1, "
                                    "but it is the checkpoint of epoch 2")


def test_a_manifest_must_be_of_its_own_epoch_and_name_only_hashes(tmp_path):
    found = saved(tmp_path, mlp())
    manifest = json.loads(found.manifest.read_text())
    found.manifest.write_text(json.dumps({**manifest, "epoch": 3}))
    with pytest.raises(UsageError, match="the manifest epoch-0001.json is damaged: it says epoch 3"):
        load_state(found)
    manifest["sha256"]["epoch-0001.state.pt"] = "../../etc/passwd"
    found.manifest.write_text(json.dumps(manifest))
    with pytest.raises(UsageError) as caught:
        load_state(found)
    assert caught.value.message.startswith(
        "the manifest epoch-0001.json is damaged: sha256.epoch-0001.state.pt: string should match pattern")


def test_only_the_names_save_writes_count_as_checkpoints(tmp_path):
    found = saved(tmp_path, mlp(), epoch=2)
    folder = found.manifest.parent
    for name in ("epoch-0000.json", "epoch-7.json", "epoch-\u0663\u0663.json"):  # 0, unpadded, Arabic-Indic digits
        (folder / name).write_text("{}")
    assert checkpoint.latest(tmp_path) == found


@pytest.mark.parametrize("slot", ["weights", "state", "manifest"])
@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "sparse 50 GB"])
def test_checkpoint_files_are_read_only_when_plain_and_small_enough(tmp_path, slot, kind):
    """A link to /dev/zero never ends, a FIFO never opens, a sparse file claims 50 GB: each was read
    whole before it was hashed, and ended in a MemoryError or a hang."""
    found = saved(tmp_path, mlp())
    path = getattr(found, slot)
    path.unlink()
    if kind == "/dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as handle:
            handle.truncate(50 << 30)
    with pytest.raises(UsageError) as caught:
        load_weights(found, mlp()) if slot == "weights" else load_state(found)
    assert caught.value.file == str(path)
    if kind == "sparse 50 GB":
        what = "a manifest" if slot == "manifest" else "a checkpoint of this network"
        assert caught.value.message.startswith(f"{path.name} is {50 << 30:,} bytes, more than {what} can be (")
    else:
        device = "a character device" if kind == "/dev/zero" else "a FIFO (named pipe)"
        assert caught.value.message == f"{path.name} is {device}, not a regular file; refusing to read it"


def big_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))  # 1.6 MB of weights


def test_a_write_that_fails_midway_is_one_error_and_keeps_the_last_checkpoint(tmp_path):
    """safetensors failed with its own SafetensorError ("... (os error 27)"), torch.save with
    "unexpected pos": tracebacks. Now the file system's error names the file, and nothing is half-written."""
    model = big_mlp()
    first = saved(tmp_path, model, epoch=1)
    with file_size_limit(256 << 10), pytest.raises(UsageError) as caught:
        saved(tmp_path, model, epoch=2)
    assert caught.value.message.endswith("epoch-0002.safetensors: File too large")
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0001.json", "epoch-0001.safetensors",
                                                        "epoch-0001.state.pt"]
    assert checkpoint.latest(tmp_path) == first
    checkpoint.load_weights(big_mlp(), first, spec="S", trained_from=TRAINED_FROM)


@pytest.fixture
def small_disk(tmp_path):
    """A 900 KiB tmpfs: a real full disk, where this machine lets a test mount one (root). It holds one
    checkpoint of the network below and the run's other files, but not a second checkpoint beside it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=900k", "tmpfs", str(mount)], capture_output=True,
                          check=False)
    if made.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_during_training_is_one_message_and_the_run_resumes(small_disk, tmp_path):
    from test_runner_support import tiny_npz

    spec = tmp_path / "wide.arch"
    spec.write_text("network wide : [1, 8, 8] -> [3] = flatten; linear 2048; relu; linear 3\n")  # 560 KB of weights
    data = tiny_npz(tmp_path / "tiny.npz")
    run = small_disk / "run"
    args = ["train", str(spec), "--data", str(data), "--device", "cpu", "--batch-size", "20", "--epochs", "3",
            "--out", str(run)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    weights = run / "checkpoints" / "epoch-0002.safetensors"
    assert f"{weights}: error: cannot write {weights}: No space left on device\n" in result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1
    assert checkpoint.latest(run).epoch == 1
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temporary left
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)  # space freed
    result = CliRunner().invoke(app, ["train", str(spec), "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert f"resuming {run} after epoch 1" in result.output and checkpoint.latest(run).epoch == 3
