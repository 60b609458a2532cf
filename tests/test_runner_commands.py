"""``archdsl train`` and ``archdsl eval`` from the command line, with a real spec and the real compiler."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_runner_support import CNN_SPEC as CNN
from test_runner_support import DATA_ROOT

QUICK = ["--data-dir", str(DATA_ROOT), "--limit", "1000", "--batch-size", "50", "--lr", "0.05",
         "--momentum", "0.9", "--device", "cpu", "--threads", "1"]
ISSUE_OPTIONS = ["--param", "--data", "--data-dir", "--epochs", "--batch-size", "--lr", "--optimizer", "--momentum",
                 "--weight-decay", "--schedule", "--resize", "--device", "--amp", "--channels-last", "--compile",
                 "--seed", "--out", "--resume", "--warmup", "--label-smoothing", "--clip-grad", "--threads",
                 "--allow-divergence"]
# The options that take one of a fixed set: click lists the set in --help, completes it, and refuses a typo.
CHOICES = {"--optimizer": "sgd|adam|adamw", "--schedule": "constant|cosine|onecycle", "--amp": "auto|bf16|fp16|off",
           "--init": "default|d2l", "--device": "auto|cuda|cpu"}


@pytest.fixture(scope="module")
def cli():
    from archdsl.cli import app  # train and eval are registered on it

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "cnn.arch"
    path.write_text(CNN)
    return path


def test_importing_the_commands_leaves_torch_out():
    code = "import sys, archdsl.runner.commands, archdsl.runner; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_lists_every_option_of_the_issue(cli):
    result = cli("train", "--help")
    assert result.exit_code == 0
    for option in ISSUE_OPTIONS:
        assert option in result.output, option
    help_text = " ".join(result.output.split())  # as click wraps it
    for option, choices in CHOICES.items():
        assert f"{option} [{choices}]" in help_text, option
    evaluation = cli("eval", "--help").output
    assert "--checkpoint" in evaluation and "--device [auto|cuda|cpu]" in evaluation and "--threads N" in evaluation


@pytest.mark.parametrize("option", sorted(CHOICES))
def test_a_value_outside_a_choice_is_clicks_one_error(option, spec):
    """Read as the installed command reads it: click's refusal becomes our one error, naming the choices."""
    done = subprocess.run([sys.executable, "-m", "archdsl", "train", str(spec), option, "typo"],
                          capture_output=True, text=True, timeout=120, check=False)
    message, hint = done.stderr.splitlines()
    assert (done.returncode, done.stdout) == (1, "")
    assert message.startswith("archdsl: error: ") and option in message and "'typo'" in message, message
    assert all(f"'{choice}'" in message for choice in CHOICES[option].split("|")), message
    assert hint == "  hint: see archdsl train --help"


def test_train_resume_and_eval(cli, spec, tmp_path):
    run = tmp_path / "run"
    result = cli("train", spec, "-p", "width=8", *QUICK, "--epochs", "1", "--out", run)
    assert result.exit_code == 0, result.output
    header, first, *_ = result.output.splitlines()
    assert header == (f"cnn on fashion-mnist (1,000 training and 1,000 test images): cpu, 1 thread (--threads); "
                      f"run folder {run}")
    assert first.startswith("epoch 1/1  train_loss ")
    assert (run / "spec.arch").read_text() == CNN

    # --resume takes the run's --param values; --epochs trains it further.
    result = cli("train", spec, "--resume", run, "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        (f"cnn on fashion-mnist (1,000 training and 1,000 test images): cpu, 1 thread (the run's, from run.json); "
         f"run folder {run}"),
        f"resuming {run} after epoch 1"]
    assert (run / "metrics.csv").read_text().count("\n") == 3

    result = cli("eval", spec, "--checkpoint", run)
    assert result.exit_code == 0, result.output
    final_acc = (run / "metrics.csv").read_text().splitlines()[-1].split(",")[4]
    assert result.output.startswith("test_loss ") and f"test_acc {float(final_acc):.4f}" in result.output
    assert "(1000 examples, checkpoint of epoch 2)" in result.output


def test_user_mistakes_exit_1_with_one_diagnostic(cli, spec, tmp_path):
    run = tmp_path / "run"
    assert cli("train", spec, *QUICK, "--epochs", "1", "--out", run).exit_code == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    weights = run / "checkpoints" / "epoch-0001.safetensors"
    other_spec = (f"error: this checkpoint was trained from a different spec (or different --param or --input "
                  f"values)\n  hint: it was trained from `{spec}` (network 'cnn'); pass that spec with those --param "
                  f"and --input values, or with none to take the run's own")
    cases = [
        (["train", spec, "--resume", run, "--lr", "0.1"],
         ("archdsl: error: --resume continues a run with the options it was started with; drop --lr\n"
          "  hint: only --epochs, --device, --data-dir, --threads, --allow-divergence, --patience and --log may "
          "change when resuming; --reschedule lets --lr, --schedule and --warmup change from the next epoch\n")),
        (["train", spec, "--resume", run, "-p", "width=4", "--epochs", "2"],
         f"{other_spec}; or start a new run with --out\n"),
        (["eval", spec, "--checkpoint", run, "-p", "width=4"], f"{other_spec}\n"),
        (["eval", spec, "--checkpoint", run, "--input", "1x32x32"], f"{other_spec}\n"),
        (["eval", spec, "--checkpoint", weights],
         (f"{weights}: error: {weights} is a file, not a run folder\n"
          f"  hint: pass the run folder that holds it: {run}\n")),
        (["train", spec, "--resume", run / "run.json"], f"{run / 'run.json'} is a file, not a run folder"),
        (["train", spec, *QUICK, "--seed", "99999999999999999999", "--out", tmp_path / "r5"],
         "archdsl: error: --seed must be between 0 and 18446744073709551615, got 99999999999999999999"),
        (["train", spec, *QUICK, "--lr", "1e309", "--out", tmp_path / "r6"],
         "archdsl: error: --lr must be a finite number, got inf"),
        (["train", spec, *QUICK, "--weight-decay", "nan", "--out", tmp_path / "r7"],
         "archdsl: error: --weight-decay must be a finite number, got nan"),
        (["train", spec, *QUICK, "--out", run], "already holds files"),
        (["train", spec, *QUICK, "--resize", "32", "--out", tmp_path / "r2"],
         "error: --resize 32 makes 1x32x32 images, but the network 'cnn' expects 1x28x28 images"),
        (["train", spec, *QUICK, "--data", tmp_path, "--out", tmp_path / "r3"], "is not a data folder"),
        (["train", spec, *QUICK, "--threads", "0", "--out", tmp_path / "r8"],
         "archdsl: error: --threads must be at least 1, got 0\n"),
        (["train", spec, *QUICK, "--out", spec / "run"], "cannot create the run folder"),
        (["eval", spec, "--checkpoint", tmp_path / "nothing"], "no such run folder"),
        (["train", spec, *QUICK, "--input", "1xHxW", "--out", tmp_path / "r4"],
         f"{spec}: error: training needs a concrete input size, and cnn's is 1xHxW"),
        (["eval", spec, "--checkpoint", run, "--input", "1xHxW"], "error: evaluating needs a concrete input size"),
    ]
    for args, expected in cases:
        result = cli(*args)
        assert result.exit_code == 1, (args, result.output)
        assert expected in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert not any((tmp_path / name).exists() for name in ("r2", "r3", "r4", "r5", "r6", "r7", "r8"))


@pytest.mark.parametrize(("text", "found"), [("[]", "list"), ('"x"', "'x'")])
def test_a_run_json_that_is_not_an_object_is_damaged(cli, spec, tmp_path, text, found):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(text)
    expected = (f"{run / 'run.json'}: error: run.json is damaged: input should be an object (got {found})\n"
                "  hint: archdsl writes run.json once, when a run starts; restore it, or start a new run\n")
    for args in (["eval", spec, "--checkpoint", run], ["train", spec, "--resume", run, "--epochs", "2"]):
        result = cli(*args)
        assert (result.exit_code, result.output) == (1, expected)
    assert [p.name for p in run.iterdir()] == ["run.json"]


def test_a_diverging_run_stops_with_one_error_and_can_go_on(cli, tmp_path):
    """At --lr 100 this MLP's loss is NaN within 50 steps: the run stops there, its folder resumable; with
    --allow-divergence it trains on, and says so once."""
    spec = tmp_path / "mlp.arch"
    spec.write_text("network mlp : [1, 28, 28] -> [10] = flatten; linear 100; relu; linear 10\n")
    run = tmp_path / "run"
    result = cli("train", spec, "--data-dir", DATA_ROOT, "--limit", "3000", "--batch-size", "50", "--lr", "100",
                 "--threads", "1", "--epochs", "2", "--out", run)
    assert result.exit_code == 1
    assert result.output.splitlines()[1:] == [
        "archdsl: error: the training loss became NaN in epoch 1 (by step 50): the run diverged and stopped",
        (f"  hint: no epoch of {run} finished; a lower --lr (or --warmup, --clip-grad) usually helps, in a new run; "
         f"to train on regardless: archdsl train {spec} --resume {run} --allow-divergence")]
    assert sorted(p.name for p in run.iterdir()) == [".archdsl-run", "run.json", "spec.arch"]

    result = cli("train", spec, "--resume", run, "--allow-divergence")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert warnings == [("warning: the training loss of epoch 1 is nan: the run has diverged, and trains on as "
                         "--allow-divergence asks (its weights stay NaN once they are)")]
    assert [row.split(",")[1] for row in (run / "metrics.csv").read_text().splitlines()[1:]] == ["nan", "nan"]


# -- issue 16: replaying a run, its imports, the softmax warning, TensorBoard ------------------------------------

ISSUE16_OPTIONS = ["--augment", "--val", "--keep", "--monitor", "--patience", "--log", "--init-from", "--reschedule",
                   "--config", "--from"]


def test_help_lists_the_options_of_issue_16(cli):
    help_text = " ".join(cli("train", "--help").output.split())
    for option in ISSUE16_OPTIONS:
        assert option in help_text, option
    assert "--keep [both|best|last]" in help_text and "--log [tensorboard]" in help_text
    assert "--weights [last|best]" in " ".join(cli("eval", "--help").output.split())
    predict = " ".join(cli("predict", "--help").output.split())
    assert "IMAGE..." in predict and "--top K" in predict and "--checkpoint RUN_DIR" in predict


@pytest.fixture
def imported(tmp_path) -> Path:
    """A spec whose blocks come from a file it imports, as specs/ do."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.arch").write_text("block stage(c) = conv3x3 c; relu; maxpool2\n")
    spec = tmp_path / "net.arch"
    spec.write_text('import "lib/blocks.arch"\n\n'
                    "network net(width = 4) : [1, 28, 28] -> [10] =\n"
                    "    stage(width); stage(2 * width); flatten; linear 10\n")
    return spec


def test_a_run_replays_from_its_folder_alone(cli, imported, tmp_path):
    """The run folder keeps the spec's imports; --from trains the same run again from the folder, elsewhere."""
    run = tmp_path / "run"
    result = cli("train", imported, "-p", "width=2", *QUICK, "--epochs", "2", "--val", "0.2", "--augment", "flip",
                 "--out", run)
    assert result.exit_code == 0, result.output
    assert (run / "lib" / "blocks.arch").read_text() == (tmp_path / "lib" / "blocks.arch").read_text()
    record = json.loads((run / "run.json").read_text())
    assert record["imports"] == [{"path": "lib/blocks.arch", "kept": True,
                                  "sha256": hashlib.sha256(b"block stage(c) = conv3x3 c; relu; maxpool2\n").hexdigest()}]
    (tmp_path / "lib" / "blocks.arch").unlink()  # the original is gone: the folder is all there is
    again = tmp_path / "again"
    result = cli("train", "--from", run, "--out", again)
    assert result.exit_code == 0, result.output
    assert (again / "metrics.csv").read_text().splitlines()[1:] != []
    columns = [line.split(",")[:5] + line.split(",")[-2:] for line in (run / "metrics.csv").read_text().splitlines()]
    replayed = [line.split(",")[:5] + line.split(",")[-2:] for line in (again / "metrics.csv").read_text().splitlines()]
    assert replayed == columns
    assert json.loads((again / "run.json").read_text())["spec"] == {
        "path": str(run / "spec.arch"), "params": ["width=2"], "network": None, "input": None}
    # --config takes a run.json anywhere, and options given beside it win.
    result = cli("train", "--config", run / "run.json", "--epochs", "1", "--out", tmp_path / "third")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "third" / "metrics.csv").read_text().splitlines()[1].split(",")[:5] == columns[1][:5]
    # --resume needs no SPEC either: the run's copy compiles.
    result = cli("train", "--resume", again, "--epochs", "3")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == f"resuming {again} after epoch 2"


def test_replaying_mistakes_are_one_error(cli, imported, tmp_path):
    cases = [
        (["train", "--config", tmp_path], f"{tmp_path} is a folder; --config takes a run.json file"),
        (["train", "--config", tmp_path / "run.json"], f"{tmp_path / 'run.json'}: no such file"),
        (["train", "--from", tmp_path / "nothing"], "no such run folder"),
        (["train", "--from", tmp_path, "--config", tmp_path / "x.json"], "--config and --from both name the run"),
        (["train"], "missing the spec to train"),
        (["train", imported, "--reschedule"], "--reschedule changes the schedule of a run that --resume continues"),
        (["train", imported, *QUICK, "--val", "1.5"], "--val must be a count of examples or a fraction between 0 and 1"),
        (["train", imported, *QUICK, "--val", "1000", "--out", tmp_path / "v"],
         "--val 1,000 validation examples, but the training split has 1,000: both parts need at least one"),
        (["train", imported, *QUICK, "--augment", "rotate"], "--augment: unknown transform 'rotate'"),
        (["train", imported, *QUICK, "--monitor", "val_loss"], "--monitor val_loss needs a validation split"),
        (["train", imported, *QUICK, "--patience", "0"], "--patience must be at least 1, got 0"),
        (["train", imported, *QUICK, "--init-from", tmp_path / "nothing", "--out", tmp_path / "i"],
         "no such run folder"),
    ]
    for args, expected in cases:
        result = cli(*args)
        assert result.exit_code == 1, (args, result.output)
        assert expected in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert not any((tmp_path / name).exists() for name in ("v", "i"))
    done = subprocess.run([sys.executable, "-m", "archdsl", "train", str(imported), "--val", "many"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stderr.splitlines()[0]) == (
        1, "archdsl: error: invalid value for '--val': 'many' is neither a count of examples nor a fraction")


def test_a_final_softmax_is_warned_about_at_its_place(cli, tmp_path):
    spec = tmp_path / "soft.arch"
    spec.write_text("network soft : [1, 28, 28] -> [10] =\n    flatten; linear 10; softmax\n")
    result = cli("train", spec, *QUICK, "--epochs", "1", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:4] == [
        (f"{spec}:2:25: warning: network 'soft' ends in a softmax, but archdsl train applies cross-entropy to the "
         "network's outputs, which takes scores (logits) and applies its own softmax"),
        "    2 |     flatten; linear 10; softmax",
        "      |                         ^^^^^^^",
        ("  hint: drop the final softmax: the scores' argmax is the same class, and torch.softmax on the outputs "
         "gives the probabilities (archdsl predict prints them)")]
    plain = tmp_path / "plain.arch"
    plain.write_text("network plain : [1, 28, 28] -> [10] =\n    flatten; linear 10; softmax; linear 10\n")
    result = cli("train", plain, *QUICK, "--epochs", "1", "--out", tmp_path / "plain-run")
    assert result.exit_code == 0 and "warning" not in result.output


def test_tensorboard_logs_each_epoch_and_the_graph(cli, spec, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = cli("train", spec, *QUICK, "--epochs", "2", "--val", "100", "--log", "tensorboard", "--out", run)
    assert result.exit_code == 0, result.output
    assert "note:" not in result.output  # the graph traced
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert set(tags["scalars"]) == {"loss/train", "accuracy/train", "loss/val", "accuracy/val", "loss/test",
                                    "accuracy/test", "learning_rate", "examples_per_second"}
    assert [event.step for event in events.Scalars("accuracy/test")] == [1, 2]
    assert tags["graph"]
    rows = (run / "metrics.csv").read_text().splitlines()
    assert events.Scalars("accuracy/val")[-1].value == pytest.approx(float(rows[-1].split(",")[-1]))
    # A resume purges what an interrupted run logged past its checkpoint: each epoch appears once.
    result = cli("train", spec, "--resume", run, "--epochs", "3")
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("accuracy/test")] == [1, 2, 3]
