"""What each configuration of a sweep came to, one row of sweep.csv each.

    run,status,width,depth,lr,params,macs,epochs,final_train_loss,final_train_acc,final_test_loss,final_test_acc,
        best_test_acc,best_epoch,seconds,error
    0001,trained,16,1,0.05,12810,470016,2,0.93...,0.66...,0.78...,0.71...,0.71...,2,3.914,

A trained configuration's numbers come from its run folder's metrics.csv: ``final_X`` from its last row for
every loss and accuracy column the runner writes, ``best_test_acc`` and ``best_epoch`` from its best epoch,
``seconds`` the sum of its epochs' times (evaluation included, data loading not). No torch here.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from archdsl.atomic import write_text_atomic
from archdsl.errors import UsageError
from archdsl.runner.runfolder import MAX_RECORD_BYTES, METRICS_CSV
from archdsl.runner.untrusted import read_limited

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
    metrics: dict[str, float] = field(default_factory=dict)  # final_*, best_test_acc, best_epoch, epochs, seconds
    error: str | None = None  # the diagnostic of a failure or a compile error

    @property
    def accuracy(self) -> float:
        return self.metrics["final_test_acc"]

    def line(self) -> str:
        """What the sweep prints when the configuration ends."""
        where = " ".join([f"{name}={value}" for name, value in self.values.items()] + [f"lr={self.lr:g}"])
        size = f"{self.params:,} params, {_short(self.macs)} MACs" if self.params is not None else ""
        if self.status == TRAINED:
            return (f"{self.run} {where}: test_acc {self.metrics['final_test_acc']:.4f} (best "
                    f"{self.metrics['best_test_acc']:.4f}), {size}, {self.metrics['seconds']:.3g} s")
        if self.status == TOO_LARGE:
            return f"{self.run} {where}: skipped, {self.error}"
        what = "failed to compile" if self.status == COMPILE_ERROR else "failed"
        return f"{self.run} {where}: {what}\n" + _indented(self.error or "")


def trained(row: Row, run_dir: Path) -> Row:
    """``row`` with the results that ``run_dir``'s metrics.csv holds."""
    return Row(row.run, row.values, row.lr, TRAINED, row.params, row.macs, read_metrics(run_dir))


def read_metrics(run_dir: Path) -> dict[str, float]:
    path = run_dir / METRICS_CSV
    data, _ = read_limited(path, MAX_RECORD_BYTES, f"the {METRICS_CSV} of a run")
    try:
        rows = [{name: float(value) for name, value in row.items()} for row in csv.DictReader(io.StringIO(data.decode()))]
        if not rows:
            raise ValueError("it has no epochs")
        best = max(rows, key=lambda row: row["test_acc"] if math.isfinite(row["test_acc"]) else -1.0)
        final = rows[-1]
        metrics = {"epochs": float(len(rows))}
        metrics.update({f"final_{name}": value for name, value in final.items() if name not in _NOT_RESULTS})
        metrics.update(best_test_acc=best["test_acc"], best_epoch=best["epoch"],
                       seconds=sum(row["seconds"] for row in rows))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise UsageError(f"{METRICS_CSV} of the run {run_dir.name} cannot be read: {err}", file=str(path),
                         hint="the runner writes it; the run folder was edited or damaged") from None
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
