"""The best epoch and early stopping, from a run's metrics alone."""

from __future__ import annotations

import math

import pytest

from archdsl.errors import UsageError
from archdsl.runner.runfolder import EpochMetrics
from archdsl.runner.selection import best_epoch, stopped_early


def history(accuracies: list[float], losses: list[float] | None = None, validated: bool = True) -> list[EpochMetrics]:
    losses = losses or [1.0 - a for a in accuracies]
    return [EpochMetrics(epoch=i, train_loss=loss, train_acc=acc, test_loss=loss, test_acc=acc, examples_per_s=1.0,
                         seconds=1.0, lr=0.1, val_loss=loss if validated else None, val_acc=acc if validated else None)
            for i, (acc, loss) in enumerate(zip(accuracies, losses, strict=True), start=1)]


def test_the_best_epoch_is_the_first_of_equals_and_follows_the_metrics_direction():
    rows = history([0.5, 0.7, 0.7, 0.6], losses=[0.9, 0.4, 0.3, 0.35])
    assert best_epoch(rows, "val_acc") == 2  # epoch 3 only equals it
    assert best_epoch(rows, "val_loss") == 3  # lower is better
    assert best_epoch(rows[:1], "test_acc") == 1


def test_nan_is_never_best_unless_every_epoch_has_one():
    rows = history([0.5, math.nan, 0.4])
    assert best_epoch(rows, "val_acc") == 1
    assert best_epoch(history([math.nan, 0.3]), "val_acc") == 2
    assert best_epoch(history([math.nan, math.nan]), "val_acc") == 1


def test_patience_counts_epochs_since_the_best():
    rows = history([0.5, 0.7, 0.6, 0.65, 0.69])
    assert stopped_early(rows[:4], "val_acc", 3) is None
    stop = stopped_early(rows, "val_acc", 3)
    assert stop is not None and stop.best.epoch == 2
    assert stop.describe() == "val_acc has not improved for 3 epochs (best 0.7000 in epoch 2)"
    assert stopped_early(rows, "val_acc", None) is None
    assert stopped_early(rows, "val_acc", 4) is None


def test_a_validation_metric_of_a_run_without_validation_is_an_error():
    with pytest.raises(UsageError, match="epoch 1 has no val_acc: the run has no validation split"):
        best_epoch(history([0.5], validated=False), "val_acc")
