"""The learning curves, as the book draws them: loss and accuracies against epochs (and the validation
split's, with --val)."""

from __future__ import annotations

from pathlib import Path

from archdsl.atomic import write_atomic
from archdsl.runner.runfolder import EpochMetrics

CURVES = "curves"


def write_curves(folder: Path, history: list[EpochMetrics], title: str) -> None:
    """curves.png and curves.svg: loss on the left, accuracy on the right."""
    drawn = figure(history, title)
    for suffix in ("png", "svg"):
        write_atomic(folder / f"{CURVES}.{suffix}", lambda tmp, fmt=suffix: drawn.savefig(tmp, format=fmt, dpi=120))


def figure(history: list[EpochMetrics], title: str):
    """The curves as a matplotlib Figure (also what a notebook redraws after each epoch)."""
    # The object API with an explicit Agg canvas: no pyplot, no global backend switch, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [row.epoch for row in history]
    drawn = Figure(figsize=(8, 3.2), layout="constrained")
    FigureCanvasAgg(drawn)
    loss_axes, acc_axes = drawn.subplots(1, 2)
    loss_axes.plot(epochs, [row.train_loss for row in history], "-o", label="train loss")
    acc_axes.plot(epochs, [row.train_acc for row in history], "-o", label="train acc")
    if all(row.val_loss is not None for row in history):  # a run with --val
        loss_axes.plot(epochs, [row.val_loss for row in history], ":o", label="val loss")
        acc_axes.plot(epochs, [row.val_acc for row in history], ":o", label="val acc")
    loss_axes.plot(epochs, [row.test_loss for row in history], "--o", label="test loss")
    acc_axes.plot(epochs, [row.test_acc for row in history], "--o", label="test acc")
    for axes, label in ((loss_axes, "loss"), (acc_axes, "accuracy")):
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
        axes.legend()
        axes.set_xlim(0.5, max(epochs) + 0.5)
    drawn.suptitle(title)
    return drawn
