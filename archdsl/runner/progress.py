"""What a run prints: a rich progress bar per epoch on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from archdsl.runner.runfolder import EpochMetrics

REFRESH_S = 0.5  # how often the bar asks the device for the running loss (each ask waits for it)


class Reporter:
    """Plain lines, for logs and CI; also the base of the terminal's progress bar."""

    def __init__(self, epochs: int, stream: TextIO) -> None:
        self.epochs = epochs
        self.stream = stream

    def start_epoch(self, epoch: int, steps: int) -> None:
        pass

    def step(self, done: int, examples: int, running: Callable[[], tuple[float, float]]) -> None:
        """``running()`` returns the loss and accuracy so far; call it sparingly, it synchronises."""

    def end_epoch(self, row: EpochMetrics) -> None:
        print(row.line(self.epochs), file=self.stream, flush=True)

    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class BarReporter(Reporter):
    def __init__(self, epochs: int, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        super().__init__(epochs, stream)
        self.console = Console(file=stream)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/" + str(epochs)),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  acc {task.fields[acc]}  {task.fields[rate]} ex/s"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task = None
        self.started = 0.0
        self.refreshed = 0.0

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.task = self.progress.add_task("train", total=steps, epoch=epoch, loss="-", acc="-", rate="-")
        self.started = self.refreshed = time.perf_counter()

    def step(self, done: int, examples: int, running: Callable[[], tuple[float, float]]) -> None:
        now = time.perf_counter()
        fields = {}
        if now - self.refreshed >= REFRESH_S:
            loss, acc = running()
            rate = examples / max(now - self.started, 1e-9)
            fields = {"loss": f"{loss:.4f}", "acc": f"{acc:.4f}", "rate": f"{rate:,.0f}"}
            self.refreshed = now
        self.progress.update(self.task, completed=done, **fields)

    def end_epoch(self, row: EpochMetrics) -> None:
        self.progress.remove_task(self.task)
        self.console.print(row.line(self.epochs), highlight=False)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def close(self) -> None:
        self.progress.stop()


class Silent(Reporter):
    """Ranks other than 0 print nothing."""

    def end_epoch(self, row: EpochMetrics) -> None:
        pass

    def message(self, text: str) -> None:
        pass


def reporter(epochs: int, *, main: bool, stream: TextIO | None = None) -> Reporter:
    stream = sys.stdout if stream is None else stream
    if not main:
        return Silent(epochs, stream)
    if stream.isatty():
        return BarReporter(epochs, stream)
    return Reporter(epochs, stream)
