"""Which checkpoints a run keeps (--keep, --monitor), early stopping (--patience), starting from another run's
weights (--init-from) and a new schedule on a resume (--reschedule): each exact across a resume, each refusal
one error that changes nothing. Tiny runs on a random .npz (milliseconds an epoch)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_runner_support import FakeNetwork, tiny_network, tiny_npz

from archdsl.errors import UsageError
from archdsl.runner import checkpoint, evaluation, train
from archdsl.runner.options import TrainOptions


def outcome(history) -> list[tuple]:
    return [(r.epoch, r.train_loss, r.train_acc, r.val_loss, r.val_acc, r.test_loss, r.test_acc, r.lr)
            for r in history]


def names(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def files_of(*epochs: int) -> list[str]:
    return sorted(f"epoch-{e:04d}.{suffix}" for e in epochs for suffix in ("json", "safetensors", "state.pt"))


@pytest.fixture(scope="module")
def options(tmp_path_factory) -> TrainOptions:
    """On this data and seed, val_acc is best at epoch 2 of 6 (the MLP overfits random images)."""
    data = tiny_npz(tmp_path_factory.mktemp("data") / "tiny.npz", train=90, test=30)
    return TrainOptions(data=str(data), epochs=6, batch_size=10, lr=0.5, threads=1, val=30)


def start(options: TrainOptions, out: Path, **changes) -> train.RunResult:
    return train.start(tiny_network(), options.replace(out=str(out), **changes), stream=io.StringIO())


def test_keep_both_keeps_the_best_and_the_last_and_both_load(options, tmp_path):
    result = start(options, tmp_path / "run")
    assert (result.best_epoch, result.final.epoch) == (2, 6)
    assert names(result.run_dir) == files_of(2, 6)
    last = evaluation.evaluate(tiny_network(), result.run_dir)
    best = evaluation.evaluate(tiny_network(), result.run_dir, weights="best")
    assert (last.epoch, best.epoch) == (6, 2)
    assert (last.test_acc, best.test_acc) == (result.history[5].test_acc, result.history[1].test_acc)
    assert best.line().endswith("(30 examples, best checkpoint of epoch 2)")


def test_keep_last_keeps_one_checkpoint_and_says_the_best_is_gone(options, tmp_path):
    result = start(options, tmp_path / "run", keep="last")
    assert names(result.run_dir) == files_of(6)
    with pytest.raises(UsageError) as caught:
        evaluation.evaluate(tiny_network(), result.run_dir, weights="best")
    assert caught.value.message == "the run's best epoch by val_acc is 2, and its checkpoint was not kept"
    assert caught.value.hint == "the run keeps last (--keep); its last checkpoint is epoch 6"


def test_the_monitor_chooses_the_best_epoch(options, tmp_path):
    by_loss = start(options, tmp_path / "loss", monitor="val_loss")
    assert by_loss.best_epoch == 1
    assert names(by_loss.run_dir) == files_of(1, 6)
    with pytest.raises(UsageError, match="--monitor val_acc needs a validation split"):
        options.replace(val=None, monitor="val_acc")


def test_early_stopping_then_a_resume_is_refused_until_more_patience(options, tmp_path):
    result = start(options, tmp_path / "run", patience=3)
    assert (result.final.epoch, result.best_epoch) == (5, 2)
    assert result.early_stop == "val_acc has not improved for 3 epochs (best 0.3333 in epoch 2)"
    assert train.finished(result.run_dir)
    before = snapshot(result.run_dir)
    with pytest.raises(UsageError) as caught:
        train.resume(tiny_network(), result.run_dir, stream=io.StringIO())
    assert caught.value.message == (f"the run in {result.run_dir} stopped early after epoch 5: val_acc has not "
                                    "improved for 3 epochs (best 0.3333 in epoch 2)")
    assert caught.value.hint == "pass --patience N with N > 3 to train it further"
    assert snapshot(result.run_dir) == before
    more = train.resume(tiny_network(), result.run_dir, patience=10, stream=io.StringIO())
    straight = start(options, tmp_path / "straight", patience=10)
    assert outcome(more.history) == outcome(straight.history)


def test_keep_best_ends_with_the_best_alone_and_cannot_train_further(options, tmp_path):
    result = start(options, tmp_path / "run", keep="best")
    assert names(result.run_dir) == ["ended.json", *files_of(2)]
    assert json.loads((result.run_dir / "checkpoints" / "ended.json").read_text()) == {
        "format": 1, "epoch": 6, "best": 2}
    assert evaluation.evaluate(tiny_network(), result.run_dir).epoch == 2
    assert evaluation.evaluate(tiny_network(), result.run_dir, weights="best").epoch == 2
    assert train.finished(result.run_dir)
    with pytest.raises(UsageError) as caught:
        train.resume(tiny_network(), result.run_dir, epochs=12, stream=io.StringIO())
    assert caught.value.message == (f"the run in {result.run_dir} ended after epoch 6 with --keep best, which kept "
                                    "only the checkpoint of its best epoch (2); training further needs the last "
                                    "epoch's")
    assert caught.value.hint == f"start a new run from its weights: --init-from {result.run_dir}"


@pytest.mark.parametrize("keep", ["both", "best"])
def test_a_resumed_run_keeps_what_an_uninterrupted_one_keeps(options, tmp_path, keep):
    straight = start(options, tmp_path / "straight", keep=keep)
    first = start(options, tmp_path / "resumed", keep=keep, epochs=4)
    assert names(first.run_dir) == (["ended.json", *files_of(2)] if keep == "best" else files_of(2, 4))
    if keep == "best":  # ended: a resume is refused; the straight run is what it would have been
        return
    resumed = train.resume(tiny_network(), first.run_dir, epochs=6, stream=io.StringIO())
    assert outcome(resumed.history) == outcome(straight.history)
    assert names(resumed.run_dir) == names(straight.run_dir)
    for name in names(straight.run_dir):
        if name.endswith(".safetensors"):
            ours, theirs = (load_file(run / "checkpoints" / name) for run in (resumed.run_dir, straight.run_dir))
            assert all(torch.equal(ours[key], theirs[key]) for key in theirs) and ours.keys() == theirs.keys(), name


def test_init_from_starts_with_the_other_runs_weights(options, tmp_path):
    source = start(options, tmp_path / "source", epochs=2, keep="last")
    tuned = start(options, tmp_path / "tuned", epochs=1, init_from=str(source.run_dir), lr=1e-9)
    # At a learning rate of 1e-9 the weights stay the source's: the first epoch tests as the source's last.
    assert tuned.final.test_loss == pytest.approx(source.final.test_loss, rel=1e-6)
    record = json.loads((tuned.run_dir / "run.json").read_text())
    manifest = json.loads((source.run_dir / "checkpoints" / "epoch-0002.json").read_text())
    assert record["init_from"] == {"run": str(source.run_dir.resolve()), "epoch": 2,
                                   "sha256": manifest["sha256"]["epoch-0002.safetensors"]}
    assert record["options"]["init_from"] == str(source.run_dir)


def test_init_from_a_network_of_other_shapes_lists_every_difference(options, tmp_path):
    source = start(options, tmp_path / "source", epochs=1)
    other = FakeNetwork(kind="mlp", input_shape=(1, 8, 8), output_shape=(4,))  # 4 classes: another head
    data = tiny_npz(tmp_path / "four.npz", classes=4)
    with pytest.raises(UsageError) as caught:
        train.start(other, TrainOptions(data=str(data), epochs=1, batch_size=10, threads=1, out=str(tmp_path / "new"),
                                        init_from=str(source.run_dir)), stream=io.StringIO())
    assert caught.value.message == (
        "the weights of epoch-0001.safetensors do not fit the network; 2 tensors differ:\n"
        "  4.weight: the network's is [4, 32], the file's [3, 32]\n"
        "  4.bias: the network's is [4], the file's [3]")
    assert caught.value.hint == "--init-from takes a run of a network with the same layers and shapes"
    assert not (tmp_path / "new").exists()


def test_a_new_schedule_on_resume_only_when_asked_and_recorded(options, tmp_path):
    run = start(options, tmp_path / "run", epochs=3, keep="last").run_dir
    before = snapshot(run)
    with pytest.raises(UsageError) as caught:
        train.resume(tiny_network(), run, epochs=6, lr=0.05, stream=io.StringIO())
    assert caught.value.message == ("--lr would change the learning rate of a run that is resumed; that takes "
                                    "--reschedule")
    with pytest.raises(UsageError, match="--lr must be positive"):
        train.resume(tiny_network(), run, epochs=6, lr=-1.0, reschedule=True, stream=io.StringIO())
    assert snapshot(run) == before
    resumed = train.resume(tiny_network(), run, epochs=6, lr=0.05, schedule="cosine", reschedule=True,
                           stream=io.StringIO())
    assert [row.lr for row in resumed.history[:3]] == [0.5] * 3
    assert 0.001 < resumed.history[3].lr < 0.05 and resumed.history[5].lr < 0.001  # cosine from 0.05 to 0
    record = json.loads((run / "run.json").read_text())
    assert record["schedule_changes"] == [{"epoch": 4, "step": 18, "lr": 0.05, "schedule": "cosine", "warmup": None}]
    assert record["options"]["lr"] == 0.5  # the run's own options stay as it began


def test_a_rescheduled_run_resumes_with_its_recorded_schedule(options, tmp_path):
    """Killed after the rescheduled epoch 4: the plain resume that follows replays the change from run.json."""
    straight = start(options, tmp_path / "straight", epochs=3, keep="last").run_dir
    whole = train.resume(tiny_network(), straight, epochs=6, lr=0.05, reschedule=True, stream=io.StringIO())
    parts = start(options, tmp_path / "parts", epochs=3, keep="last").run_dir
    train.resume(tiny_network(), parts, epochs=4, lr=0.05, reschedule=True, stream=io.StringIO())
    finished = train.resume(tiny_network(), parts, epochs=6, stream=io.StringIO())
    assert outcome(finished.history) == outcome(whole.history)


def test_a_checkpoint_holds_only_tensors_after_all_this(options, tmp_path):
    """The state file of a run with validation, keep and patience is still plain data: weights_only loads it."""
    result = start(options, tmp_path / "run", epochs=2, patience=5)
    latest = checkpoint.latest(result.run_dir)
    state = torch.load(latest.state, weights_only=True)
    assert state["history"][-1]["val_acc"] == result.final.val_acc
