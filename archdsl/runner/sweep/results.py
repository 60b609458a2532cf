"""What each configuration of a sweep came to, one row of sweep.csv each.

    run,status,width,depth,lr,params,macs,epochs,final_train_loss,final_train_acc,final_test_loss,final_test_acc,
        best_test_acc,best_epoch,seconds,error
    0001,trained,16,1,0.05,12810,470016,2,0.93...,0.66...,0.78...,0.71...,0.71...,2,3.914,

A trained configuration's numbers come from its run folder's metrics.csv: ``final_X`` from its last row for
every loss and accuracy column the runner writes (val_loss and val_acc with --val), ``best_epoch`` and
``best_M`` from the runner's best epoch by the run's --monitor M (test_acc by default), ``seconds`` the sum of
its epochs' times (evaluation included, data loading not). No torch here.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from archdsl.atomic import write_text_atomic
from archdsl.errors import UsageError
from archdsl.runner import runfolder, selection

CSV_NAME = "sweep.csv"
PENDING, TRAINED, FAILED, COMPILE_ERROR, TOO_LARGE = "pending", "trained", "failed", "compile-error", "too-large"
# metrics.csv's columns that describe the run rather than what it learnt
_NOT_RESULTS = ("epoch", "examples_per_s", "seconds", "lr")


@dataclass(frozen=True)
class Row:
    """One configuration: its values, its static size, and how it ended."""

    run: str
    values: dict[str, str]  # parameter -> value, as --param takes it
    lr: float
    status: str
    params: int | None = None
    macs: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # epochs, final_*, best_<monitor>, best_epoch, seconds
    error: str | None = None  # the diagnostic of a failure or a compile error

    @property
    def accuracy(self) -> float:
        return self.metrics["final_test_acc"]

    def line(self) -> str:
        """What the sweep prints when the configuration ends."""
        where = " ".join([f"{name}={value}" for name, value in self.values.items()] + [f"lr={self.lr:g}"])
        size = f"{self.params:,} params, {_short(self.macs)} MACs" if self.params is not None else ""
        if self.status == TRAINED:
            name, value = next((key, value) for key, value in self.metrics.items()
                               if key.startswith("best_") and key != "best_epoch")
            return (f"{self.run} {where}: test_acc {self.accuracy:.4f}, {name} {value:.4f} in epoch "
                    f"{int(self.metrics['best_epoch'])}, {size}, {self.metrics['seconds']:.3g} s")
        if self.status == TOO_LARGE:
            return f"{self.run} {where}: skipped, {self.error}"
        what = "failed to compile" if self.status == COMPILE_ERROR else "failed"
        return f"{self.run} {where}: {what}\n" + _indented(self.error or "")


def trained(row: Row, run_dir: Path) -> Row:
    """``row`` with the results that ``run_dir``'s metrics.csv holds."""
    return Row(row.run, row.values, row.lr, TRAINED, row.params, row.macs, read_metrics(run_dir))


def read_metrics(run_dir: Path) -> dict[str, float]:
    """The final and best results of a finished run, and its time; the best epoch is the runner's own, by the
    run's --monitor (test_acc unless it has a validation split)."""
    history = runfolder.read_metrics(run_dir)
    if not history:
        raise UsageError(f"the run {run_dir.name} has no epochs in its {runfolder.METRICS_CSV}",
                         file=str(run_dir / runfolder.METRICS_CSV),
                         hint="the runner writes it; the run folder was edited or damaged")
    monitor = runfolder.read(run_dir).options.monitored
    final = asdict(history[-1])
    best = next(row for row in history if row.epoch == selection.best_epoch(history, monitor))
    metrics = {"epochs": float(len(history))}
    metrics.update({f"final_{name}": value for name, value in final.items()
                    if name not in _NOT_RESULTS and value is not None})
    metrics.update({f"best_{monitor}": best.metric(monitor), "best_epoch": float(best.epoch),
                    "seconds": sum(row.seconds for row in history)})
    return metrics


def write_csv(folder: Path, rows: list[Row], names: list[str]) -> Path:
    """sweep.csv, atomically: every configuration, those still to train as ``pending``."""
    metric_names: list[str] = []
    for row in rows:
        metric_names += [name for name in row.metrics if name not in metric_names]
    columns = ["run", "status", *names, "lr", "params", "macs", *metric_names, "error"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        metrics = [_number(name, row.metrics[name]) if name in row.metrics else "" for name in metric_names]
        error = (row.error or "").splitlines()[0] if row.error else ""
        writer.writerow([row.run, row.status, *(row.values.get(name, "") for name in names), repr(row.lr),
                         "" if row.params is None else row.params, "" if row.macs is None else row.macs,
                         *metrics, error])
    path = folder / CSV_NAME
    write_text_atomic(path, out.getvalue())
    return path


def best(rows: list[Row]) -> Row | None:
    done = [row for row in rows if row.status == TRAINED]
    return max(done, key=lambda row: row.accuracy) if done else None


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """The indices of the points (cost, accuracy) that no other point beats: none costs as little or less
    and is at least as accurate, with one of the two strictly. In order of cost.

    >>> pareto_front([(1, 0.5), (2, 0.4), (3, 0.7), (3, 0.6)])
    [0, 2]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_accuracy = [], -math.inf
    for i in order:
        if points[i][1] > best_accuracy:
            front.append(i)
            best_accuracy = points[i][1]
    return front


def _number(name: str, value: float) -> str:
    if name in ("epochs", "best_epoch"):
        return str(int(value))
    if name == "seconds":
        return f"{value:.3f}"
    return repr(value)


def _short(count: int | None) -> str:
    """``1.2 M``, ``34 k``: a MAC count at a glance."""
    if count is None:
        return "?"
    for size, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if count >= size:
            return f"{count / size:.3g}{unit}"
    return str(count)


def _indented(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
