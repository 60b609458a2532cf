"""Optimisers and learning-rate schedules, and an optimiser's state from a checkpoint."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from archdsl.errors import UsageError
from archdsl.runner.optim import Schedule, build_optimizer, load_optimizer_state
from archdsl.runner.options import TrainOptions

STATE_FILE = Path("run/checkpoints/epoch-0001.state.pt")


def lrs(options: TrainOptions, steps_per_epoch: int = 10) -> list[float]:
    schedule = Schedule.of(options, steps_per_epoch)
    return [schedule.lr(step) for step in range(schedule.total_steps)]


def test_constant_with_linear_warmup():
    got = lrs(TrainOptions(epochs=3, lr=0.4, warmup=1))
    assert got[:10] == pytest.approx([0.04 * (i + 1) for i in range(10)])
    assert got[10:] == [0.4] * 20


def test_cosine_falls_to_zero():
    got = lrs(TrainOptions(epochs=2, lr=1.0, schedule="cosine"))
    assert got[0] == 1.0
    assert got[10] == pytest.approx(0.5 * (1 + math.cos(math.pi * 10 / 20)))
    assert got[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 19 / 20)))
    assert all(a >= b for a, b in itertools.pairwise(got))


def test_onecycle_rises_for_30_percent_then_falls_linearly():
    got = lrs(TrainOptions(epochs=10, lr=2.0, schedule="onecycle"))
    peak = got.index(max(got))
    assert peak == 29 and got[peak] == 2.0
    assert got[-1] == pytest.approx(2.0 / 70)
    assert lrs(TrainOptions(epochs=10, lr=2.0, schedule="onecycle", warmup=0))[0] == 2.0


@pytest.mark.parametrize("name, kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                        ("adamw", torch.optim.AdamW)])
def test_optimizers(name, kind):
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(model, TrainOptions(optimizer=name, lr=0.3, momentum=0.5, weight_decay=0.01),
                                torch.device("cpu"))
    assert type(optimizer) is kind
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.3 and group["weight_decay"] == 0.01
    if name == "sgd":
        assert group["momentum"] == 0.5


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 0}, "--epochs must be at least 1, got 0"),
    ({"optimizer": "rmsprop"}, "--optimizer must be one of sgd, adam, adamw, got 'rmsprop'"),
    ({"momentum": 1.0}, r"--momentum must be in \[0, 1\)"),
    ({"warmup": 20}, "--warmup must be between 0 and the number of epochs"),
    ({"lr": 0.0}, "--lr must be positive"),
])
def test_bad_options_are_usage_errors(changes, message):
    with pytest.raises(UsageError, match=message):
        TrainOptions(**changes)


def stepped(options: TrainOptions) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    optimizer = build_optimizer(model, options, torch.device("cpu"))
    model(torch.ones(5, 4)).sum().backward()
    optimizer.step()
    return model, optimizer


SGD = TrainOptions(momentum=0.9)


def test_an_optimizer_state_loads_with_the_runs_own_hyperparameters():
    _, trained = stepped(SGD)
    saved = trained.state_dict()
    saved["param_groups"][0]["momentum"] = float("nan")  # a checkpoint's copy of the options is not used
    _, fresh = stepped(SGD)
    load_optimizer_state(fresh, SGD, saved, STATE_FILE)
    assert fresh.param_groups[0]["momentum"] == 0.9
    assert torch.equal(fresh.state_dict()["state"][0]["momentum_buffer"], trained.state_dict()["state"][0]["momentum_buffer"])


def wrong_shape(saved):
    saved["state"][0]["momentum_buffer"] = torch.zeros(4, 3)


def not_finite(saved):
    saved["state"][1]["momentum_buffer"][0] = float("nan")


def adam_state(saved):
    _, adam = stepped(TrainOptions(optimizer="adam"))
    saved["state"] = adam.state_dict()["state"]


def unknown_parameter(saved):
    saved["state"][9] = saved["state"][0]


def other_groups(saved):
    saved["param_groups"][0]["params"] = [0, 1]


@pytest.mark.parametrize(("change", "problem"), [
    (wrong_shape, ("its optimizer's momentum_buffer is torch.float32 of shape [4, 3]; "
                   "a float tensor of shape [3, 4] was expected")),
    (not_finite, "its optimizer's momentum_buffer holds a negative, NaN or infinite value"),
    (adam_state, "its optimizer state holds exp_avg, exp_avg_sq, step for a parameter; sgd keeps momentum_buffer"),
    (unknown_parameter, "its optimizer state names parameter 9; the network has 4"),
    (other_groups, "its optimizer state is for other parameters than the network's"),
])
def test_an_optimizer_state_of_other_shapes_kinds_or_values_is_refused(change, problem):
    """Each of these loaded (torch checks only the number of parameters) and then failed in the first
    step with a traceback, or trained on NaN."""
    _, trained = stepped(SGD)
    saved = trained.state_dict()
    change(saved)
    _, fresh = stepped(SGD)
    before = {index: {name: value.clone() for name, value in entries.items()}
              for index, entries in fresh.state_dict()["state"].items()}
    with pytest.raises(UsageError) as caught:
        load_optimizer_state(fresh, SGD, saved, STATE_FILE)
    assert caught.value.message == f"epoch-0001.state.pt is damaged: {problem}"
    assert caught.value.file == str(STATE_FILE)
    assert all(torch.equal(fresh.state_dict()["state"][i][n], v) for i, entries in before.items()
               for n, v in entries.items())  # nothing half-loaded
