"""Optimisers and learning-rate schedules."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from archdsl.errors import UsageError
from archdsl.runner.optim import Schedule, build_optimizer
from archdsl.runner.options import TrainOptions


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
