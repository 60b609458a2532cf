"""The best epoch by a metric, and early stopping: pure functions of a run's metrics.

Nothing about the best epoch is stored beside the metrics: it is recomputed from the history that each
checkpoint holds, so a resumed run keeps and prunes exactly the checkpoints that an uninterrupted one
would, and ``eval --weights best`` finds the same epoch.

    best_epoch(history, "val_acc")             # the first epoch with the highest val_acc
    stopped_early(history, "val_acc", 3)       # no improvement in the last 3 epochs
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from archdsl.runner.runfolder import EpochMetrics


def higher_is_better(metric: str) -> bool:
    return metric.endswith("_acc")


def best_epoch(history: Sequence[EpochMetrics], metric: str) -> int:
    """The epoch whose ``metric`` is best; the earliest of equals (a later epoch must improve strictly).
    A NaN never counts as best, unless every epoch has one (with --allow-divergence)."""
    values = [row.metric(metric) for row in history]
    best = 0
    for index, value in enumerate(values):
        if _better(value, values[best], metric):
            best = index
    return history[best].epoch


@dataclass(frozen=True)
class EarlyStop:
    """Why a run stopped before its last epoch."""

    metric: str
    patience: int
    best: EpochMetrics

    def describe(self) -> str:
        return (f"{self.metric} has not improved for {self.patience} epoch{'s' if self.patience != 1 else ''} "
                f"(best {self.best.metric(self.metric):.4f} in epoch {self.best.epoch})")


def stopped_early(history: Sequence[EpochMetrics], metric: str, patience: int | None) -> EarlyStop | None:
    """An EarlyStop when the last ``patience`` epochs brought no improvement of ``metric``, else None."""
    if patience is None or not history:
        return None
    best = best_epoch(history, metric)
    if history[-1].epoch - best < patience:
        return None
    return EarlyStop(metric, patience, next(row for row in history if row.epoch == best))


def _better(value: float, best: float, metric: str) -> bool:
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if higher_is_better(metric) else value < best
