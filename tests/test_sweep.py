"""``archdsl sweep`` on a few hundred real Fashion-MNIST images: the plan, sweep.csv and the plots, configurations
skipped and reported, a killed sweep resumed exactly, --jobs and --ray giving what one process gives, and each
user mistake as one message."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_runner_support import DATA_ROOT

import archdsl
from archdsl.runner.sweep.plots import accuracy_figure, edf_figure
from archdsl.runner.sweep.results import Row, pareto_front
from archdsl.runner.sweep.space import Space, parse_numbers, parse_parameter

# A network that gets deeper with `depth`; at depth 4 the fourth pooling meets a 1x1 image and fails to compile.
TINY = """\
network tiny(width = 4, depth = 1, classes = 10) : [1, 28, 28] -> [classes] =
    conv3x3 width s=2; relu;
    repeat depth <conv3x3 width; relu; maxpool2>;
    flatten; linear classes
"""
# One thread: runs repeat bit for bit (the default would follow the machine's load).
TRAINING = ["--epochs", "2", "--batch-size", "50", "--limit", "300", "--threads", "1", "--device", "cpu",
            "--data-dir", str(DATA_ROOT)]
GRID = ["-p", "width=2,3,4", "-p", "depth=1,4", "--lr", "0.05,0.1", "--max-params", "2000", *TRAINING]


def sweep(*args) -> Result:
    from archdsl.cli import app

    return CliRunner().invoke(app, ["sweep", *(str(arg) for arg in args)])


def assert_one_error(result, message: str) -> None:
    """Exit status 1 with one diagnostic that says ``message``, and no exception besides the exit."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert message in result.stderr and result.stderr.count("error:") == 1, result.stderr


def table(folder: Path, *, without=("seconds",)) -> list[dict[str, str]]:
    """sweep.csv's rows, without the columns that time things."""
    with open(folder / "sweep.csv", newline="") as handle:
        return [{name: value for name, value in row.items() if name not in without} for row in csv.DictReader(handle)]


def metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.arch"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def grid(spec, tmp_path_factory):
    """width 2, 3, 4 x depth 1, 4 x lr 0.05, 0.1: depth 4 fails to compile, width 4 has more than 2,000
    parameters; four configurations train."""
    out = tmp_path_factory.mktemp("sweeps") / "grid"
    result = sweep(spec, *GRID, "--out", out)
    return result, out


def test_the_grid_trains_what_compiles_and_fits_and_reports_the_rest(grid, spec):
    result, out = grid
    assert result.exit_code == 0, result.output
    statuses = {row["run"]: row["status"] for row in table(out)}
    assert statuses == {"0001": "trained", "0002": "trained", "0003": "compile-error", "0004": "compile-error",
                        "0005": "trained", "0006": "trained", "0007": "compile-error", "0008": "compile-error",
                        "0009": "too-large", "0010": "too-large", "0011": "compile-error", "0012": "compile-error"}
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["0001", "0002", "0005", "0006"]
    lines = result.output.splitlines()
    assert lines[0] == (f"sweep of tiny in {spec}: 12 configurations (a grid of width x depth x lr); one configuration "
                        f"at a time; sweep folder {out}")
    # The compile error with its place and caret, under the configuration's line.
    at = lines.index("0003 width=2 depth=4 lr=0.05: failed to compile")
    assert lines[at + 1].startswith(f"  {spec}:3:") and "error:" in lines[at + 1]
    assert lines[at + 2].strip().startswith("3 |") and "^" in lines[at + 3]
    assert "0009 width=4 depth=1 lr=0.05: skipped, 2,158 params, more than --max-params 2,000" in lines
    trained = next(line for line in lines if line.startswith("0005 width=3 depth=1 lr=0.05: test_acc "))
    assert re.fullmatch(r"0005 width=3 depth=1 lr=0.05: test_acc 0\.\d{4}, best_test_acc 0\.\d{4} in epoch [12], "
                        r"1,594 params, 22\.6 k MACs, [\d.]+ s", trained)
    assert lines[-2].startswith("12 configurations: 4 trained, 6 failed to compile, 2 too large; best test_acc ")
    assert lines[-1] == "wrote " + ", ".join(str(out / name) for name in
                                             ("sweep.csv", "accuracy.png", "accuracy.svg", "edf.png", "edf.svg"))


def test_sweep_csv_holds_the_values_sizes_and_each_run_s_metrics(grid, spec):
    _, out = grid
    rows = table(out, without=())
    assert list(rows[0]) == ["run", "status", "width", "depth", "lr", "params", "macs", "epochs", "final_train_loss",
                             "final_train_acc", "final_test_loss", "final_test_acc", "best_test_acc", "best_epoch",
                             "seconds", "error"]
    for row in rows:
        net = archdsl.load(spec, width=int(row["width"]), depth=int(row["depth"])) if row["depth"] == "1" else None
        if row["status"] == "compile-error":
            assert row["params"] == row["macs"] == row["final_test_acc"] == ""
            assert row["error"].startswith(f"{spec}:3:") and "error:" in row["error"]
            continue
        assert (int(row["params"]), int(row["macs"])) == (net.params, net.macs)
        if row["status"] == "too-large":
            assert row["error"] == f"{net.params:,} params, more than --max-params 2,000"
            continue
        history = metrics(out / "runs" / row["run"])
        last = history[-1]
        assert row["epochs"] == "2" and row["error"] == ""
        for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert row[f"final_{name}"] == last[name]
        best = max(history, key=lambda epoch: float(epoch["test_acc"]))
        assert (row["best_test_acc"], row["best_epoch"]) == (best["test_acc"], best["epoch"])
        assert float(row["seconds"]) == pytest.approx(sum(float(epoch["seconds"]) for epoch in history), abs=2e-3)
        run = json.loads((out / "runs" / row["run"] / "run.json").read_text())
        assert run["options"]["lr"] == float(row["lr"]) and run["options"]["seed"] == 0
        assert run["param_values"]["width"] == int(row["width"])


def test_the_plan_records_every_configuration_in_grid_order(grid):
    _, out = grid
    plan = json.loads((out / "sweep.json").read_text())
    expected = [(f"{n:04d}", [f"width={w}", f"depth={d}"], lr)
                for n, (w, d, lr) in enumerate(((w, d, lr) for w in (2, 3, 4) for d in (1, 4) for lr in (0.05, 0.1)),
                                               start=1)]
    assert [(c["run"], c["params"], c["lr"]) for c in plan["configurations"]] == expected
    assert plan["parameters"] == ["width=2,3,4", "depth=1,4"] and plan["lr"] == "0.05,0.1"
    assert plan["options"]["data_dir"] == str(DATA_ROOT.absolute()) and "lr" not in plan["options"]


def test_the_plots_are_written_as_png_and_svg(grid):
    _, out = grid
    for name in ("accuracy", "edf"):
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "Pareto front" in (out / "accuracy.svg").read_text()
    edf = (out / "edf.svg").read_text()
    assert "width" in edf and "learning rate" in edf and "test error" in edf


def test_resuming_a_finished_sweep_trains_nothing(grid, spec, tmp_path):
    _, out = grid
    copy = tmp_path / "grid"
    shutil.copytree(out, copy)
    before = snapshot(copy / "runs")
    result = sweep(spec, "--resume", copy)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (f"resuming the sweep of tiny in {copy}: 4 of 12 configurations trained; "
                                             "one configuration at a time")
    assert snapshot(copy / "runs") == before
    assert table(copy, without=()) == table(out, without=())


def test_samples_are_drawn_with_the_seed(spec, tmp_path):
    """--samples N --seed S: N distinct configurations of the grid, as the space draws them (none trains here:
    every one has more MACs than --max-macs 1, which is the one error)."""
    out = tmp_path / "sampled"
    result = sweep(spec, "-p", "width=2..9", "-p", "depth=1..3", "--lr", "0.05,0.1,0.2", "--samples", "5",
                   "--seed", "7", "--max-macs", "1", *TRAINING, "--out", out)
    assert_one_error(result, "no configuration of the sweep could be trained")
    space = Space((parse_parameter("width=2..9"), parse_parameter("depth=1..3"),
                   parse_parameter("lr=0.05,0.1,0.2")))
    drawn = [space.configuration(index) for index in space.indices(5, 7)]
    plan = json.loads((out / "sweep.json").read_text())
    assert [(c["params"], c["lr"]) for c in plan["configurations"]] == [
        ([f"width={c['width']}", f"depth={c['depth']}"], c["lr"]) for c in drawn]
    assert len({json.dumps(c) for c in drawn}) == 5 and plan["samples"] == 5 and plan["seed"] == 7
    assert {row["status"] for row in table(out)} == {"too-large"}
    assert parse_numbers("0.05,0.1,0.2", "--lr").size == 3


def test_the_runner_s_options_apply_to_every_configuration(spec, tmp_path):
    """A validation split and early stopping, as archdsl train takes them: sweep.csv gains the validation
    columns, and the best epoch is the runner's, by its --monitor (val_acc with --val)."""
    out = tmp_path / "validated"
    result = sweep(spec, "-p", "width=2,3", *TRAINING, "--epochs", "3", "--val", "100", "--patience", "1",
                   "--out", out)
    assert result.exit_code == 0, result.output
    for row in table(out):
        history = metrics(out / "runs" / row["run"])
        assert row["final_val_acc"] == history[-1]["val_acc"] and row["final_val_loss"] == history[-1]["val_loss"]
        best = max(history, key=lambda epoch: float(epoch["val_acc"]))  # the first of equals, as the runner's
        assert (row["best_val_acc"], row["best_epoch"]) == (best["val_acc"], best["epoch"])
        assert "best_test_acc" not in row and row["epochs"] == str(len(history))
        assert json.loads((out / "runs" / row["run"] / "run.json").read_text())["options"]["val"] == 100


# Stage widths as a list parameter, as specs/anynet.arch takes its depths and channels.
STAGES = """\
network stages(widths = [4, 8], classes = 10) : [1, 28, 28] -> [classes] =
    for w in widths <conv3x3 w; relu; maxpool2>;
    flatten; linear classes
"""


def test_a_list_parameter_is_swept_and_its_runs_read_back(tmp_path):
    """Each configuration's run.json records the list as a list, and eval reads that run.json back (its schema
    once took numbers alone, and every configuration of docs/sweeps.md's AnyNet example failed there)."""
    spec = tmp_path / "stages.arch"
    spec.write_text(STAGES)
    out = tmp_path / "lists"
    result = sweep(spec, "-p", "widths=[2|4,4..5]", *TRAINING, "--epochs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    rows = table(out)
    assert [(row["widths"], row["status"]) for row in rows] == [
        ("[2,4]", "trained"), ("[2,5]", "trained"), ("[4,4]", "trained"), ("[4,5]", "trained")]
    run = out / "runs" / rows[-1]["run"]
    assert json.loads((run / "run.json").read_text())["param_values"]["widths"] == [4, 5]
    from archdsl.cli import app

    scored = CliRunner().invoke(app, ["eval", str(spec), "--checkpoint", str(run)])
    assert scored.exit_code == 0, scored.output


def test_a_configuration_that_fails_to_train_is_reported_and_tried_again_on_resume(spec, tmp_path):
    out = tmp_path / "diverges"
    result = sweep(spec, "-p", "width=2", "--lr", "1e9", *TRAINING, "--out", out)
    assert_one_error(result, "1 configuration failed to train (run 0001)")
    assert "0001 width=2 lr=1e+09: failed" in result.stdout
    assert "the training loss became" in result.stdout  # the runner's own diagnostic, under the line
    assert f"--resume {out}" in result.stderr
    row = table(out)[0]
    assert row["status"] == "failed" and "the training loss became" in row["error"]
    assert json.loads((out / "results" / "0001.json").read_text())["status"] == "failed"
    assert "the training loss became" in (out / "logs" / "0001.log").read_text()
    again = sweep(spec, "--resume", out)
    assert again.exit_code == 1 and "0001 width=2 lr=1e+09: failed" in again.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["-p", "width=2,,3"], "--param width=2,,3: a value expected before ','"),
    (["-p", "widht=2,3"], "network tiny has no parameter 'widht'"),
    (["-p", "width=2", "-p", "width=3"], "--param sets 'width' twice"),
    (["--lr", "0.1,-1"], "--lr must be positive, got -1.0"),
    (["--lr", "fast"], "--lr fast: 'fast' is not a number"),
    (["--jobs", "0"], "--jobs must be at least 1, got 0"),
    (["--jobs", "2", "--ray", "127.0.0.1:1"], "--jobs and --ray each choose where configurations train"),
    (["--ray", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    (["-p", "width=2,3", "--samples", "3"], "--samples 3 asks for more configurations than the design space has (2)"),
    (["--max-params", "0"], "--max-params must be at least 1, got 0"),
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
])
def test_a_mistake_is_one_message_and_makes_no_folder(spec, tmp_path, args, message):
    if "--ray" in args and "--jobs" not in args:
        pytest.importorskip("ray")
    out = tmp_path / "never"
    result = sweep(spec, *TRAINING, *args, "--out", out)  # the last of an option given twice counts
    assert_one_error(result, message)
    assert not out.exists() or not any(out.iterdir())


def test_a_folder_that_is_not_a_new_one_or_a_sweep_is_refused(spec, grid, tmp_path):
    _, out = grid
    before = snapshot(out)
    taken = sweep(spec, "-p", "width=2", *TRAINING, "--out", out)
    assert_one_error(taken, f"{out} already holds files; a new sweep needs an empty or new folder")
    assert f"--resume {out}" in taken.stderr
    assert_one_error(sweep(spec, "--resume", tmp_path), f"{tmp_path} is not an archdsl sweep folder (no sweep.json)")
    assert_one_error(sweep(spec, "--resume", out, "--lr", "0.2"),
                     "--resume goes on with the sweep as it was planned; drop --lr")
    assert_one_error(sweep(spec, "--resume", out, "--threads", "0"), "--threads must be at least 1, got 0")
    edited = tmp_path / "tiny.arch"
    edited.write_text(TINY.replace("relu;", "relu6;", 1))
    assert_one_error(sweep(edited, "--resume", out), f"{edited} is not the spec this sweep began with")
    assert snapshot(out) == before


@pytest.mark.slow
def test_a_killed_sweep_resumes_where_it_stopped_with_identical_metrics(spec, tmp_path):
    """SIGKILL the sweep while its second configuration trains (after its first epoch), resume it, and compare with
    a sweep that was never interrupted: the same sweep.csv (timings aside) and the same metrics.csv per run."""
    args = [spec, "-p", "width=2,3", "--lr", "0.05,0.1", *TRAINING, "--epochs", "4"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "archdsl", "sweep", *map(str, args), "--out", str(killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoints = killed / "runs" / "0002" / "checkpoints"

    def saved() -> bool:  # an epoch of the second configuration, not its last (only the newest is kept)
        return any(checkpoints.glob("epoch-000[123].json"))

    deadline = time.monotonic() + 120
    while not saved() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.kill()
    process.wait()
    assert saved(), process.stderr.read().decode()
    assert table(killed)[1]["status"] == "pending" and not (killed / "results" / "0002.json").exists()
    first_run = snapshot(killed / "runs" / "0001")

    resumed = sweep(spec, "--resume", killed)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in (killed / "logs" / "0002.log").read_text()  # the run went on from its checkpoint
    assert snapshot(killed / "runs" / "0001") == first_run  # a finished configuration is not trained again

    straight = tmp_path / "straight"
    assert sweep(*args, "--out", straight).exit_code == 0
    assert table(killed) == table(straight)
    for run in ("0001", "0002", "0003", "0004"):
        outcome = [{k: v for k, v in row.items() if k not in ("examples_per_s", "seconds")}
                   for row in metrics(killed / "runs" / run)]
        assert outcome == [{k: v for k, v in row.items() if k not in ("examples_per_s", "seconds")}
                           for row in metrics(straight / "runs" / run)]


@pytest.mark.slow
def test_two_jobs_give_what_one_gives(grid, spec, tmp_path):
    _, one = grid
    two = tmp_path / "two"
    result = sweep(spec, *GRID, "--jobs", "2", "--out", two)
    assert result.exit_code == 0, result.output
    assert "2 configurations at a time" in result.output.splitlines()[0]
    assert table(two) == table(one)


@pytest.mark.slow
def test_configurations_run_as_ray_tasks_on_a_local_cluster(grid, spec, tmp_path):
    """A Ray head of 2 CPUs started here (and ended here, with every process it started); the sweep sends it each
    configuration as a task and gets what one process gets."""
    pytest.importorskip("ray")
    port, client_port = _free_port(), _free_port()
    head = subprocess.Popen(
        [Path(sys.executable).parent / "ray", "start", "--head", "--block", "--num-cpus", "2", "--port", str(port),
         "--node-ip-address", "127.0.0.1", "--ray-client-server-port", str(client_port), "--include-dashboard",
         "false", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_port(port, head)
        greedy = subprocess.run([sys.executable, "-m", "archdsl", "sweep", *map(str, [spec, *GRID]), "--threads", "4",
                                 "--ray", f"127.0.0.1:{port}", "--out", str(tmp_path / "greedy")],
                                check=False, capture_output=True, text=True, timeout=600)
        assert greedy.returncode == 1 and not (tmp_path / "greedy").exists()
        assert f"asks the Ray cluster at 127.0.0.1:{port} for 4 CPUs (--threads), but it has 2" in greedy.stderr
        out = tmp_path / "ray"
        result = subprocess.run([sys.executable, "-m", "archdsl", "sweep", *map(str, [spec, *GRID]),
                                 "--ray", f"127.0.0.1:{port}", "--out", str(out)],
                                check=False, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"as Ray tasks on 127.0.0.1:{port}" in result.stdout.splitlines()[0]
        _, one = grid
        assert table(out) == table(one)
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "ray start ended"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"no Ray head on port {port} after {timeout} s")


def row(run: str, width: str, lr: float, accuracy: float, params: int, macs: int) -> Row:
    return Row(run, {"width": width, "depth": "1"}, lr, "trained", params, macs,
               {"final_test_acc": accuracy, "best_test_acc": accuracy})


def test_the_pareto_front_keeps_what_nothing_beats():
    assert pareto_front([(1, 0.5), (2, 0.4), (3, 0.7), (3, 0.6), (4, 0.7), (5, 0.9)]) == [0, 2, 5]
    assert pareto_front([(2, 0.5), (1, 0.5)]) == [1]
    assert pareto_front([]) == []


def test_the_figures_draw_the_front_and_one_edf_per_value():
    rows = [row("0001", "8", 0.1, 0.60, 1_000, 10_000), row("0002", "8", 0.2, 0.70, 1_000, 10_000),
            row("0003", "16", 0.1, 0.65, 3_000, 40_000), row("0004", "16", 0.2, 0.80, 3_000, 40_000),
            row("0005", "32", 0.1, 0.75, 20_000, 160_000)]
    accuracy = accuracy_figure(rows, "tiny")
    for axes in accuracy.axes:
        front = next(line for line in axes.get_lines() if line.get_label() == "Pareto front")
        assert list(front.get_ydata()) == [0.70, 0.80]
        assert axes.get_xscale() == "log"  # costs that span a decade or more
    edf = edf_figure(rows, ["width", "depth"], "tiny")
    panels = {axes.get_title(): axes for axes in edf.axes if axes.get_visible()}
    assert sorted(panels) == ["learning rate", "width"]  # depth takes one value
    curves = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in panels["width"].get_lines()}
    assert list(curves) == ["8 (2)", "16 (2)", "32 (1)"]
    errors, shares = curves["8 (2)"]
    assert errors == pytest.approx([0.30, 0.30, 0.40]) and shares == [0.0, 0.5, 1.0]
    assert list({line.get_label() for line in panels["learning rate"].get_lines()}) != []
