"""Training on the real Fashion-MNIST files: accuracy, exact repeats, resume after a kill, eval,
and the user mistakes that must end in one clear error without losing anything."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from test_runner_support import CNN_SPEC, DATA_ROOT, FASHION_DIR, FakeNetwork, tiny_network
from torch import nn

import archdsl
from archdsl.errors import UsageError
from archdsl.runner import checkpoint, train
from archdsl.runner.options import TrainOptions

TESTS = Path(__file__).resolve().parent
# One thread: a run repeats bit for bit with the same count, and the default follows the machine's load.
SMALL = TrainOptions(epochs=3, batch_size=64, lr=0.05, momentum=0.9, schedule="cosine", warmup=0.5,
                     data_dir=str(DATA_ROOT), limit=3000, threads=1)
COLUMNS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "examples_per_s", "seconds", "lr"]


def outcome(history) -> list[tuple]:
    """What a run computed, without its timings."""
    return [(r.epoch, r.train_loss, r.train_acc, r.val_loss, r.val_acc, r.test_loss, r.test_acc, r.lr)
            for r in history]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> train.RunResult:
    """One short run, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("runs") / "finished"
    return train.start(FakeNetwork(width=8), SMALL.replace(epochs=2, out=str(out)), stream=io.StringIO())


@pytest.mark.slow
def test_a_small_relu_cnn_spec_reaches_85_percent_in_one_epoch(tmp_path):
    (tmp_path / "cnn.arch").write_text(CNN_SPEC)
    net = archdsl.load(tmp_path / "cnn.arch")
    stream = io.StringIO()
    options = TrainOptions(epochs=1, batch_size=128, lr=0.05, momentum=0.9, data_dir=str(DATA_ROOT),
                           out=str(tmp_path / "run"))
    result = train.start(net, options, stream=stream)
    assert result.final.test_acc >= 0.85, result.final
    assert result.final.examples_per_s > 0
    # Not a terminal: the header, one plain line per epoch, then the book's summary.
    lines = stream.getvalue().splitlines()
    threads = json.loads((tmp_path / "run" / "run.json").read_text())["options"]["threads"]
    assert re.fullmatch(rf"cnn on fashion-mnist \(60,000 training and 10,000 test images\): cpu, {threads} threads? "
                        rf"\([^)]+\); run folder {re.escape(str(tmp_path / 'run'))}",
                        lines[0]), lines[0]
    assert lines[1].startswith("epoch 1/1  train_loss ") and "ex/s" in lines[1]
    assert lines[2].startswith("loss ") and "test acc" in lines[2]


def test_the_run_folder(finished):
    folder = finished.run_dir
    assert sorted(p.name for p in folder.iterdir()) == [
        ".archdsl-run", "checkpoints", "curves.png", "curves.svg", "metrics.csv", "run.json", "spec.arch"]
    assert (folder / "spec.arch").read_text() == FakeNetwork().source_text
    record = json.loads((folder / "run.json").read_text())
    assert record["options"] == SMALL.replace(epochs=2, out=str(folder), augment="none").to_json()
    assert record["spec"] == {"path": "specs/cnn.arch", "params": [], "network": None, "input": None}
    assert record["data"]["train_examples"] == 3000 and record["data"]["image_shape"] == [1, 28, 28]
    with open(folder / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == COLUMNS
    assert [float(row["test_acc"]) for row in rows] == [r.test_acc for r in finished.history]
    assert (folder / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (folder / "curves.svg").read_bytes()[:1000]
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [
        "epoch-0002.json", "epoch-0002.safetensors", "epoch-0002.state.pt"]  # older epochs are pruned


def test_a_cpu_run_repeats_exactly(finished, tmp_path):
    again = train.start(FakeNetwork(width=8), SMALL.replace(epochs=2, out=str(tmp_path / "again")),
                        stream=io.StringIO())
    assert outcome(again.history) == outcome(finished.history)


def test_eval_reports_the_last_epochs_test_metrics(finished):
    result = train.evaluate(FakeNetwork(width=8), finished.run_dir)
    assert (result.epoch, result.examples) == (2, 3000)
    assert result.test_acc == finished.final.test_acc
    assert result.test_loss == pytest.approx(finished.final.test_loss, rel=1e-12)


# Augmentation of every kind and a validation split, watched for the best epoch and early stopping.
AUGMENTED = SMALL.replace(augment="crop=2:reflect,flip,erase=0.5,cutout=6", val=500, patience=2)


def test_a_resume_with_augmentation_and_validation_ends_like_an_uninterrupted_run(tmp_path):
    options = AUGMENTED.replace(limit=1000, batch_size=50, schedule="constant", warmup=None)  # 2 epochs, then 3
    whole = train.start(FakeNetwork(width=4), options.replace(out=str(tmp_path / "whole")), stream=io.StringIO())
    part = train.start(FakeNetwork(width=4), options.replace(epochs=2, out=str(tmp_path / "part")),
                       stream=io.StringIO())
    resumed = train.resume(FakeNetwork(width=4), part.run_dir, epochs=3, stream=io.StringIO())
    assert outcome(resumed.history) == outcome(whole.history)
    assert [row.val_acc for row in whole.history] == [row.val_acc for row in resumed.history]
    assert (part.run_dir / "metrics.csv").read_text().splitlines()[0].endswith(",lr,val_loss,val_acc")
    plain = train.start(FakeNetwork(width=4), options.replace(augment="none", out=str(tmp_path / "plain")),
                        stream=io.StringIO())
    assert plain.history[0].train_loss != whole.history[0].train_loss  # the augmentation did change the batches
    assert plain.history[0].val_acc is not None and plain.history[0].test_acc != whole.history[0].test_acc


@pytest.mark.slow
@pytest.mark.parametrize("options", [SMALL, AUGMENTED], ids=["plain", "augmented-validated"])
def test_resume_after_sigkill_ends_like_an_uninterrupted_run(tmp_path, options):
    reference = train.start(FakeNetwork(width=8), options.replace(out=str(tmp_path / "reference")),
                            stream=io.StringIO())
    folder = tmp_path / "killed"
    script = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
        "from test_runner_support import FakeNetwork\n"
        "from archdsl.runner import train\n"
        "from archdsl.runner.options import TrainOptions\n"
        f"train.start(FakeNetwork(width=8), TrainOptions(**{options.replace(out=str(folder)).to_json()!r}))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Kill it once the first checkpoint is complete (its manifest written last), in the next epoch.
    deadline = time.monotonic() + 120
    while checkpoint.latest(folder) is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    assert process.returncode == -signal.SIGKILL, stderr.decode()
    killed_at = checkpoint.latest(folder).epoch
    assert killed_at < SMALL.epochs  # it really was interrupted

    resumed = train.resume(FakeNetwork(width=8), folder, stream=io.StringIO())
    assert outcome(resumed.history) == outcome(reference.history)
    with open(folder / "metrics.csv", newline="") as handle:
        rows = [{k: v for k, v in row.items() if k not in ("examples_per_s", "seconds")}
                for row in csv.DictReader(handle)]
    with open(reference.run_dir / "metrics.csv", newline="") as handle:
        expected = [{k: v for k, v in row.items() if k not in ("examples_per_s", "seconds")}
                    for row in csv.DictReader(handle)]
    assert rows == expected
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == \
        sorted(p.name for p in (reference.run_dir / "checkpoints").iterdir())


def test_a_crash_while_checkpointing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    """Killed between the weights and the state of epoch 2: epoch 1's checkpoint is what resumes."""
    options = SMALL.replace(epochs=2, limit=1000, out=str(tmp_path / "run"))
    reference = train.start(FakeNetwork(width=8), options.replace(out=str(tmp_path / "reference")),
                            stream=io.StringIO())
    real_save = checkpoint.torch.save

    def dying_save(state, path):
        if state["epoch"] == 2:
            raise KeyboardInterrupt  # as if the process died here
        real_save(state, path)

    monkeypatch.setattr(checkpoint.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train.start(FakeNetwork(width=8), options, stream=io.StringIO())
    monkeypatch.undo()
    folder = tmp_path / "run"
    assert checkpoint.latest(folder).epoch == 1
    assert not [p for p in (folder / "checkpoints").iterdir() if p.name.startswith(".")]  # no temporary left
    resumed = train.resume(FakeNetwork(width=8), folder, stream=io.StringIO())
    assert outcome(resumed.history) == outcome(reference.history)


def test_resuming_a_finished_run_asks_for_more_epochs(finished):
    before = snapshot(finished.run_dir)
    with pytest.raises(UsageError, match="has finished all 2 epochs") as caught:
        train.resume(FakeNetwork(width=8), finished.run_dir, stream=io.StringIO())
    assert "--epochs N with N > 2" in caught.value.hint
    assert snapshot(finished.run_dir) == before


def test_a_checkpoint_from_another_spec_is_refused(finished):
    before = snapshot(finished.run_dir)
    message = "this checkpoint was trained from a different spec (or different --param or --input values)"
    same_spec = ("it was trained from `specs/cnn.arch` (network 'cnn'); pass that spec with those --param and "
                 "--input values, or with none to take the run's own")
    other = FakeNetwork(width=8, source_text="network cnn : [1, 28, 28] = other\n")
    with pytest.raises(UsageError) as caught:
        train.resume(other, finished.run_dir, epochs=3, stream=io.StringIO())
    error = caught.value
    assert (error.message, error.hint) == (message, f"{same_spec}; or start a new run with --out")
    assert error.file.endswith("epoch-0002.state.pt")
    # eval has no new run to start; another --input is another spec as much as another --param.
    for net in (FakeNetwork(width=8, param_values={"width": 9}), FakeNetwork(width=8, input_shape=(1, 32, 32))):
        with pytest.raises(UsageError) as caught:
            train.evaluate(net, finished.run_dir)
        assert (caught.value.message, caught.value.hint) == (message, same_spec)
    assert snapshot(finished.run_dir) == before


def test_a_wrong_image_size_says_what_each_side_has(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UsageError) as caught:
        train.start(FakeNetwork(input_shape=(1, 32, 32)), SMALL.replace(out=str(out)), stream=io.StringIO())
    assert caught.value.message == "the network 'cnn' expects 1x32x32 images, but fashion-mnist's images are 1x28x28"
    assert caught.value.hint == "pass --resize 32 to resize them on the device"
    with pytest.raises(UsageError) as caught:
        train.start(FakeNetwork(), SMALL.replace(out=str(out), resize=64), stream=io.StringIO())
    assert caught.value.message == "--resize 64 makes 1x64x64 images, but the network 'cnn' expects 1x28x28 images"
    with pytest.raises(UsageError, match="expects 3x28x28 images, but fashion-mnist has 1-channel images"):
        train.start(FakeNetwork(input_shape=(3, 28, 28)), SMALL.replace(out=str(out)), stream=io.StringIO())
    with pytest.raises(UsageError, match="fashion-mnist has 10 classes, but network 'cnn' outputs 5 scores"):
        train.start(FakeNetwork(output_shape=(5,)), SMALL.replace(out=str(out)), stream=io.StringIO())
    # Too many scores too: the extra ones would never be trained, yet argmax can pick them.
    with pytest.raises(UsageError) as caught:
        train.start(FakeNetwork(output_shape=(20,)), SMALL.replace(out=str(out)), stream=io.StringIO())
    assert caught.value.message == "fashion-mnist has 10 classes, but network 'cnn' outputs 20 scores"
    assert caught.value.hint == "make the last layer output 10 scores"
    with pytest.raises(UsageError) as caught:
        train.start(FakeNetwork(output_shape=(20,), param_values={"classes": 20}), SMALL.replace(out=str(out)),
                    stream=io.StringIO())
    assert caught.value.hint == "pass --param classes=10"
    assert not out.exists()  # refused before anything was written


def test_resize_trains_at_the_networks_size(tmp_path):
    result = train.start(FakeNetwork(kind="mlp", input_shape=(1, 16, 16)),
                         SMALL.replace(epochs=1, limit=500, resize=16, out=str(tmp_path / "run")),
                         stream=io.StringIO())
    assert result.final.test_acc > 0.3


def test_an_unwritable_run_folder_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    with pytest.raises(UsageError) as caught:
        train.start(FakeNetwork(), SMALL.replace(out=str(blocker / "run")), stream=io.StringIO())
    assert caught.value.message.startswith("cannot create the run folder: ")
    assert blocker.read_text() == "keep me"


def test_an_existing_run_is_never_overwritten(finished):
    before = snapshot(finished.run_dir)
    with pytest.raises(UsageError, match="already holds files") as caught:
        train.start(FakeNetwork(width=8), SMALL.replace(out=str(finished.run_dir)), stream=io.StringIO())
    assert f"--resume {finished.run_dir}" in caught.value.hint
    assert snapshot(finished.run_dir) == before


def test_a_bad_data_folder_is_one_clear_error(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(UsageError, match="is not a data folder: it needs train/ and test/"):
        train.start(FakeNetwork(), SMALL.replace(data=str(tmp_path / "data"), out=str(tmp_path / "run")),
                    stream=io.StringIO())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("split", ["x_train", "x_test"])
def test_an_empty_split_is_refused_before_anything_is_written(tmp_path, split):
    x, y = np.zeros((4, 28, 28), dtype=np.uint8), np.arange(4)
    arrays = {"x_train": x, "y_train": y, "x_test": x, "y_test": y}
    arrays.update({split: x[:0], "y" + split[1:]: y[:0]})
    np.savez(tmp_path / "empty.npz", **arrays)
    with pytest.raises(UsageError) as caught:
        train.start(FakeNetwork(), SMALL.replace(data=str(tmp_path / "empty.npz"), out=str(tmp_path / "run")),
                    stream=io.StringIO())
    which = "training" if split == "x_train" else "test"
    assert caught.value.message == f"the {which} split is empty: {split} in empty.npz holds no images"
    assert caught.value.file == str(tmp_path / "empty.npz")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["a uint64 label of 2**64 - 1", "0x0 images"])
def test_damaged_data_is_refused_before_anything_is_written(tmp_path, damage):
    """Both failed inside training, leaving run.json and spec.arch: a retry into the same --out was refused."""
    x, y = np.zeros((4, 8, 8), dtype=np.uint8), np.arange(4) % 3
    arrays = {"x_train": x, "y_train": y, "x_test": x, "y_test": y}
    if damage == "0x0 images":
        arrays.update(x_train=np.zeros((4, 0, 0), dtype=np.uint8), x_test=np.zeros((4, 0, 0), dtype=np.uint8))
        expected = "the training images in x_train in bad.npz have no pixels: their size is 1x0x0 (C x H x W)"
    else:
        arrays.update(y_train=np.array([0, 1, 2, 2**64 - 1], dtype=np.uint64))
        expected = "y_train in bad.npz has label 18446744073709551615; a data set may have at most 100,000 classes"
    np.savez(tmp_path / "bad.npz", **arrays)
    options = SMALL.replace(data=str(tmp_path / "bad.npz"), resize=8, out=str(tmp_path / "run"))
    with pytest.raises(UsageError) as caught:
        train.start(tiny_network(), options, stream=io.StringIO())
    assert caught.value.message == expected
    assert not (tmp_path / "run").exists()


def test_fp16_is_refused_on_the_cpu(tmp_path):
    with pytest.raises(UsageError, match="--amp fp16 needs a CUDA device; on the CPU autocast takes bf16"):
        train.start(FakeNetwork(), SMALL.replace(amp="fp16", device="cpu", out=str(tmp_path / "r")),
                    stream=io.StringIO())
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", ["lr", "momentum", "weight_decay", "warmup", "label_smoothing", "clip_grad"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_float_options_must_be_finite(name, value):
    with pytest.raises(UsageError) as caught:
        TrainOptions(**{name: value})
    assert caught.value.message == f"--{name.replace('_', '-')} must be a finite number, got {value}"


def test_the_seed_is_what_torchs_generators_take(tmp_path):
    for seed in (-1, 2**64):
        with pytest.raises(UsageError) as caught:
            TrainOptions(seed=seed)
        assert caught.value.message == f"--seed must be between 0 and 18446744073709551615, got {seed}"
    largest = SMALL.replace(epochs=1, limit=100, seed=2**64 - 1, out=str(tmp_path / "run"))
    assert train.start(FakeNetwork(kind="mlp"), largest, stream=io.StringIO()).final.epoch == 1


def test_bf16_on_the_cpu_is_opt_in_and_trains_like_fp32(finished, tmp_path):
    """The default CPU run is fp32 (``finished``); --amp bf16 autocasts: close to it, not equal to it."""
    options = SMALL.replace(epochs=2, amp="bf16", device="cpu", out=str(tmp_path / "bf16"))
    result = train.start(FakeNetwork(width=8), options, stream=io.StringIO())
    ours, fp32 = result.history[-1], finished.history[-1]
    assert ours.train_loss != fp32.train_loss  # autocast really ran in bf16
    assert ours.train_loss == pytest.approx(fp32.train_loss, rel=0.05)
    assert ours.test_acc == pytest.approx(fp32.test_acc, abs=0.03)
    again = train.start(FakeNetwork(width=8), options.replace(out=str(tmp_path / "again")), stream=io.StringIO())
    assert outcome(again.history) == outcome(result.history)  # and repeats exactly, as fp32 does


def test_options_beyond_sgd(tmp_path):
    """AdamW, one-cycle, label smoothing and clipping train (loss falls) and are recorded."""
    options = SMALL.replace(epochs=2, limit=1000, optimizer="adamw", lr=0.003, weight_decay=0.05,
                            schedule="onecycle", warmup=None, label_smoothing=0.1, clip_grad=1.0,
                            out=str(tmp_path / "run"))
    result = train.start(FakeNetwork(kind="mlp"), options, stream=io.StringIO())
    assert result.history[1].train_loss < result.history[0].train_loss
    assert result.final.lr == pytest.approx(0.003 / (2 * 16 - round(0.6 * 16)))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["options"]["label_smoothing"] == 0.1
    assert asdict(result.final)["epoch"] == 2


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_progress_bar_and_the_same_epoch_lines(tmp_path):
    screen = _Terminal()
    train.start(FakeNetwork(kind="mlp"), SMALL.replace(epochs=1, limit=500, out=str(tmp_path / "run")), stream=screen)
    assert "epoch 1/1  train_loss " in screen.getvalue()
    assert "\x1b[" in screen.getvalue()  # drawn by rich, with terminal control codes


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_a_gpu(tmp_path):
    with pytest.raises(UsageError, match="--device cuda, but torch sees no CUDA device here"):
        train.start(FakeNetwork(), SMALL.replace(device="cuda", out=str(tmp_path / "r")), stream=io.StringIO())


def test_a_run_killed_in_its_first_epoch_starts_over_in_its_folder(tmp_path, monkeypatch):
    options = SMALL.replace(epochs=1, limit=500, out=str(tmp_path / "run"))
    net = FakeNetwork(kind="mlp")
    reference = train.start(net, options.replace(out=str(tmp_path / "reference")), stream=io.StringIO())

    def dying_save(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train.start(net, options, stream=io.StringIO())
    monkeypatch.undo()
    assert checkpoint.latest(tmp_path / "run") is None
    resumed = train.resume(net, tmp_path / "run", stream=io.StringIO())
    assert outcome(resumed.history) == outcome(reference.history)


def test_a_folder_whose_creation_was_killed_is_taken_over_but_a_run_is_not(tmp_path):
    from archdsl.runner import runfolder

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / runfolder.MARKER).write_text("")  # written first: the folder is provably archdsl's
    (unfinished / runfolder.SPEC_FILE).write_text("network old : [1, 4, 4] = flatten")
    (unfinished / f".{runfolder.RUN_JSON}.k2j4x9.tmp").write_text("{")
    (unfinished / "lib").mkdir()  # the files the spec imports are written before run.json too
    (unfinished / "lib" / "blocks.arch").write_text("block b = relu")
    with runfolder.claim_new(unfinished):
        runfolder.create(unfinished, "network n : [1, 4, 4] = flatten", {"spec": {}})
    assert (unfinished / runfolder.SPEC_FILE).read_text() == "network n : [1, 4, 4] = flatten"
    assert sorted(p.name for p in unfinished.iterdir()) == [
        runfolder.MARKER, "lib", runfolder.RUN_JSON, runfolder.SPEC_FILE]
    with pytest.raises(UsageError, match="already holds files"):
        runfolder.check_new(unfinished)
    mixed = tmp_path / "mixed"  # the marker, and a file that no creation writes: the user's
    (mixed / "lib").mkdir(parents=True)
    (mixed / runfolder.MARKER).write_text("")
    (mixed / "lib" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="already holds files"):
        runfolder.check_new(mixed)


# -- where the data was, and how many threads ---------------------------------------------------------


def test_run_json_records_the_data_folder_absolute_and_the_datas_checksum(tmp_path, monkeypatch):
    """A relative --data-dir is recorded absolute, so that a resume or an eval from elsewhere finds the data;
    the checksum is of the images and labels, the same for the .gz files and an unpacked copy."""
    unpacked = tmp_path / "data" / "fashion-mnist"
    unpacked.mkdir(parents=True)
    for packed in FASHION_DIR.glob("*.gz"):
        (unpacked / packed.stem).write_bytes(gzip.decompress(packed.read_bytes()))
    monkeypatch.chdir(DATA_ROOT.parent)
    options = SMALL.replace(epochs=1, limit=300, data_dir=DATA_ROOT.name, out=str(tmp_path / "run"))
    train.start(FakeNetwork(kind="mlp"), options, stream=io.StringIO())
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["options"]["data_dir"] == str(DATA_ROOT)
    assert record["data"]["source"] == str(FASHION_DIR)
    train.start(FakeNetwork(kind="mlp"), options.replace(data_dir=str(unpacked.parent), out=str(tmp_path / "copy")),
                stream=io.StringIO())
    copy = json.loads((tmp_path / "copy" / "run.json").read_text())
    assert re.fullmatch("[0-9a-f]{64}", record["data"]["sha256"])
    assert copy["data"]["sha256"] == record["data"]["sha256"]

    monkeypatch.chdir(tmp_path)  # where ../shared/datasets is no folder
    assert train.evaluate(FakeNetwork(kind="mlp"), tmp_path / "run").examples == 300
    assert train.resume(FakeNetwork(kind="mlp"), tmp_path / "run", epochs=2, stream=io.StringIO()).final.epoch == 2


def test_a_recorded_data_folder_that_is_gone_is_named_with_where_it_came_from(tmp_path):
    data = tmp_path / "datasets"
    shutil.copytree(FASHION_DIR, data / "fashion-mnist")
    train.start(FakeNetwork(kind="mlp"), SMALL.replace(epochs=1, limit=300, data_dir=str(data),
                                                       out=str(tmp_path / "run")), stream=io.StringIO())
    shutil.rmtree(data)
    message = (f"the run's data folder {data} (its --data-dir, recorded in run.json) is not there",
               "pass --data-dir with the folder that holds the run's data now")
    with pytest.raises(UsageError) as caught:
        train.resume(FakeNetwork(kind="mlp"), tmp_path / "run", epochs=2, stream=io.StringIO())
    assert (caught.value.message, caught.value.hint, caught.value.file) == (*message, str(tmp_path / "run" / "run.json"))
    with pytest.raises(UsageError) as caught:
        train.evaluate(FakeNetwork(kind="mlp"), tmp_path / "run")
    assert (caught.value.message, caught.value.hint) == message
    # Naming the folder where the data is now is the way on.
    assert train.evaluate(FakeNetwork(kind="mlp"), tmp_path / "run", data_dir=str(DATA_ROOT)).examples == 300


def test_the_thread_count_is_chosen_recorded_and_reused(tmp_path):
    import torch

    before = torch.get_num_threads()
    stream = io.StringIO()
    result = train.start(FakeNetwork(kind="mlp"), SMALL.replace(epochs=1, limit=300, threads=None,
                                                                out=str(tmp_path / "run")), stream=stream)
    chosen = json.loads((tmp_path / "run" / "run.json").read_text())["options"]["threads"]
    assert 1 <= chosen <= (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    assert f": cpu, {chosen} thread" in stream.getvalue().splitlines()[0]
    assert torch.get_num_threads() == before  # the run gives the process its threads back
    stream = io.StringIO()
    train.resume(FakeNetwork(kind="mlp"), result.run_dir, epochs=2, stream=stream)
    assert f": cpu, {chosen} thread{'s' if chosen > 1 else ''} (the run's, from run.json); " in stream.getvalue()
    stream = io.StringIO()
    train.resume(FakeNetwork(kind="mlp"), result.run_dir, epochs=3, threads=1, stream=stream)
    assert ": cpu, 1 thread (--threads); " in stream.getvalue() or chosen == 1


# -- divergence ------------------------------------------------------------------------------------------


class _Poisoned(nn.Module):
    """A model whose scores turn NaN from its ``after``-th training batch on, or are ``scale`` times too large."""

    def __init__(self, model: nn.Module, after: int | None, scale: float) -> None:
        super().__init__()
        self.model, self.after, self.scale, self.batches = model, after, scale, 0

    def forward(self, x):
        y = self.model(x) * self.scale
        if self.training:
            self.batches += 1
            if self.after is not None and self.batches >= self.after:
                y = y * float("nan")
        return y


class PoisonedNetwork(FakeNetwork):
    def __init__(self, after: int | None = None, scale: float = 1.0) -> None:
        super().__init__(kind="mlp")
        self.after, self.scale = after, scale

    def build(self, init: str = "default", seed: int | None = None) -> nn.Module:
        return _Poisoned(super().build(init, seed), self.after, self.scale)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_finished_epoch(tmp_path):
    """500 examples in batches of 50: 10 steps an epoch; NaN from the 15th step, in epoch 2."""
    folder = tmp_path / "run"
    options = SMALL.replace(epochs=3, limit=500, batch_size=50, out=str(folder))
    with pytest.raises(UsageError) as caught:
        train.start(PoisonedNetwork(after=15), options, stream=io.StringIO())
    assert caught.value.message == "the training loss became NaN in epoch 2 (by step 20): the run diverged and stopped"
    assert caught.value.hint == (f"{folder} keeps epoch 1; a lower --lr (or --warmup, --clip-grad) usually helps, in "
                                 f"a new run; to train on regardless: archdsl train specs/cnn.arch --resume {folder} "
                                 "--allow-divergence")
    assert checkpoint.latest(folder).epoch == 1
    assert len((folder / "metrics.csv").read_text().splitlines()) == 2
    # A resume rebuilds the model (its count of batches starts again): epoch 2 is finite, epoch 3 NaN.
    stream = io.StringIO()
    result = train.resume(PoisonedNetwork(after=15), folder, allow_divergence=True, stream=stream)
    assert [np.isnan(row.train_loss) for row in result.history] == [False, False, True]
    assert stream.getvalue().count("warning: ") == 1


def test_a_nan_loss_is_caught_within_the_epoch(tmp_path):
    options = SMALL.replace(epochs=1, limit=3000, batch_size=50, out=str(tmp_path / "run"))
    with pytest.raises(UsageError) as caught:
        train.start(PoisonedNetwork(after=10), options, stream=io.StringIO())
    assert caught.value.message == "the training loss became NaN in epoch 1 (by step 50): the run diverged and stopped"
    assert caught.value.hint.startswith(f"no epoch of {tmp_path / 'run'} finished; ")
    assert checkpoint.latest(tmp_path / "run") is None


def test_an_exploding_loss_is_warned_about_once(tmp_path):
    stream = io.StringIO()
    options = SMALL.replace(epochs=3, limit=500, out=str(tmp_path / "run"))
    result = train.start(PoisonedNetwork(scale=100.0), options, stream=stream)  # losses of 10**4 to 10**6
    loss = result.history[0].train_loss
    assert loss > 23.0
    warnings = [line for line in stream.getvalue().splitlines() if line.startswith("warning: ")]
    assert warnings == [(f"warning: the training loss of epoch 1 is {loss:,.6g}, more than 10 times a uniform "
                         "guess's (2.30): the run may be diverging; a lower --lr may help")]
