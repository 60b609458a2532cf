"""Loggers beside metrics.csv: TensorBoard's event files with ``--log tensorboard``.

    RUN/tensorboard/events.out.tfevents.*    per epoch: loss and accuracy of each split, the learning rate,
                                             examples per second; once, the graph of the built module

Event files are appended as the run goes (TensorBoard's format is a log, not a file that is replaced), so
unlike the rest of the run folder they are not written atomically. A resumed run opens a new one with
``purge_step`` at its first epoch: TensorBoard then drops whatever the interrupted run logged for the epochs
that are trained again, and the curves show each epoch once.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from archdsl.errors import first_line
from archdsl.extras import required
from archdsl.runner.runfolder import EpochMetrics

FOLDER = "tensorboard"


class TensorBoard:
    """One run's event files; ``graph`` tells why the graph was left out, when torch could not trace it."""

    def __init__(self, run_dir: Path, first_epoch: int, model: torch.nn.Module, example: torch.Tensor) -> None:
        with required():
            import tensorboard  # noqa: F401 - torch.utils.tensorboard's own ImportError does not name the package
            from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / FOLDER), purge_step=first_epoch if first_epoch > 1 else None)
        self.graph = self._add_graph(model, example) if first_epoch == 1 else None

    def _add_graph(self, model: torch.nn.Module, example: torch.Tensor) -> str | None:
        """The module's graph, traced (torch.jit.trace) in eval mode on one example; None when it worked, else why not."""
        training = model.training
        model.eval()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on Python values it records as constants
                self.writer.add_graph(model, example)
        except Exception as err:  # noqa: BLE001 - a graph torch cannot trace is left out, with the reason
            return first_line(err)
        finally:
            model.train(training)
        return None

    def epoch(self, row: EpochMetrics) -> None:
        scalars = {"loss/train": row.train_loss, "accuracy/train": row.train_acc,
                   "loss/test": row.test_loss, "accuracy/test": row.test_acc,
                   "learning_rate": row.lr, "examples_per_second": row.examples_per_s}
        if row.val_loss is not None and row.val_acc is not None:
            scalars.update({"loss/val": row.val_loss, "accuracy/val": row.val_acc})
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, row.epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
