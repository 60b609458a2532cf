"""Training from a notebook: the runner's training (``archdsl.runner.train.start``, the same run folder, metrics
and checkpoints as ``archdsl train``) shown as the book's ``Animator`` shows it: a progress bar that moves during
each epoch and the learning curves redrawn after it. The result displays as the metrics table beside the curves::

    from archdsl.notebook import train
    result = train(archdsl.load("specs/lenet.arch"), epochs=10, lr=0.9, init="d2l", data_dir="../shared/datasets")
    result.final.test_acc
"""

from __future__ import annotations

import html
import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from IPython.display import display

from archdsl.runner import plot
from archdsl.runner import train as runner
from archdsl.runner.options import TrainOptions
from archdsl.runner.progress import REFRESH_S, Reporter
from archdsl.runner.runfolder import EpochMetrics
from archdsl.summary import beside, format_table

COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "ex/s", "seconds", "lr")


def train(net: runner.Network, **options) -> Training:
    """Train ``net`` with ``TrainOptions(**options)`` (``archdsl train``'s options: epochs, lr, data, data_dir,
    batch_size, optimizer, init, limit, out, ...), showing the progress live in the notebook."""
    chosen = TrainOptions(**options)
    title = f"{net.name} on {Path(chosen.data).name}"
    run = runner.start(net, chosen, report=NotebookReporter(chosen.epochs, title))
    return Training(run, title)


@dataclass(frozen=True)
class Progress:
    """The bar's state: a line of text and how far the whole run is, from 0 to 1."""

    text: str
    done: float

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        bar = f'<progress value="{self.done:.4f}" max="1" style="width: 16em; vertical-align: middle"></progress>'
        return {"text/plain": self.text,
                "text/html": f'{bar} <span style="font-family: monospace">{html.escape(self.text)}</span>'}


class NotebookReporter(Reporter):
    """A run's progress as displays that update in place: the bar from the first step, the curves from the end of
    the first epoch. Messages (the run's header, its last lines) print as ``archdsl train`` prints them."""

    def __init__(self, epochs: int, title: str) -> None:
        super().__init__(epochs, sys.stdout)
        self.title = title
        self.history: list[EpochMetrics] = []
        self.bar = display(Progress(f"epoch 1/{epochs}", 0.0), display_id=True)
        self.curves = None
        self.epoch = 1
        self.steps = 1
        self.started = self.refreshed = time.perf_counter()

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.epoch, self.steps = epoch, max(steps, 1)
        self.started = self.refreshed = time.perf_counter()
        self.bar.update(Progress(f"epoch {epoch}/{self.epochs}  step 0/{steps}", (epoch - 1) / self.epochs))

    def step(self, done: int, examples: int, running: Callable[[], tuple[float, float]]) -> None:
        now = time.perf_counter()
        if now - self.refreshed < REFRESH_S:
            return
        self.refreshed = now
        loss, acc = running()
        rate = examples / max(now - self.started, 1e-9)
        text = (f"epoch {self.epoch}/{self.epochs}  step {done}/{self.steps}  loss {loss:.4f}  acc {acc:.4f}  "
                f"{rate:,.0f} ex/s")
        self.bar.update(Progress(text, (self.epoch - 1 + done / self.steps) / self.epochs))

    def end_epoch(self, row: EpochMetrics) -> None:
        self.history.append(row)
        self.bar.update(Progress(row.line(self.epochs), row.epoch / self.epochs))
        curves = Curves(self.title, tuple(self.history))
        if self.curves is None:
            self.curves = display(curves, display_id=True)
        else:
            self.curves.update(curves)


@dataclass(frozen=True)
class Curves:
    """The learning curves so far: an image, and a line of text for a front end that shows only text."""

    title: str
    history: tuple[EpochMetrics, ...]

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        epochs = f"{len(self.history)} epoch" + ("s" if len(self.history) > 1 else "")
        return {"text/plain": f"learning curves of {self.title}, {epochs}",
                "image/svg+xml": curves_svg(self.history, self.title)}


def curves_svg(history: tuple[EpochMetrics, ...], title: str) -> str:
    """The learning curves (the run folder's curves.svg) as an <svg> element to place in HTML."""
    out = io.StringIO()
    plot.figure(history, title).savefig(out, format="svg")
    text = out.getvalue()
    return text[text.index("<svg"):]


@dataclass(frozen=True)
class Training:
    """A finished run (``run``: the runner's RunResult): it displays as its metrics, one row per epoch, beside its
    learning curves."""

    run: runner.RunResult
    title: str

    @property
    def history(self) -> tuple[EpochMetrics, ...]:
        return self.run.history

    @property
    def final(self) -> EpochMetrics:
        return self.run.final

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir

    def rows(self) -> list[list[str]]:
        """The metrics as ``archdsl train`` writes them in its lines, one row per epoch."""
        return [[str(row.epoch), f"{row.train_loss:.4f}", f"{row.train_acc:.4f}", f"{row.test_loss:.4f}",
                 f"{row.test_acc:.4f}", f"{row.examples_per_s:,.0f}", f"{row.seconds:.1f}", f"{row.lr:.4g}"]
                for row in self.history]

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        caption = f"{self.title}; run folder {self.run_dir}"
        text = f"{caption}\n\n{format_table(list(COLUMNS), self.rows(), right=set(range(len(COLUMNS))))}"
        head = "".join(f'<th style="text-align: right">{name}</th>' for name in COLUMNS)
        body = "\n".join("<tr>" + "".join(f'<td style="text-align: right">{cell}</td>' for cell in row) + "</tr>"
                         for row in self.rows())
        table = (f'<table>\n<caption style="text-align: left"><b>{html.escape(caption)}</b></caption>\n'
                 f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>")
        return {"text/plain": text, "text/html": beside(table, curves_svg(self.history, self.title))}
