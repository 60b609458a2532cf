"""A sweep's figures, from its rows: accuracy against cost with the Pareto front, and the error distribution
functions by parameter value.

    SWEEP/accuracy.png, .svg   final test accuracy against MACs (left) and parameters (right), both on a
                               log scale; the configurations that no other beats (as accurate for less) are
                               marked and joined, and labelled with their run
    SWEEP/edf.png, .svg        one panel per parameter that varies (the learning rate too): for each of its
                               values, the share of its configurations whose test error is at most e, against
                               e (Dive into Deep Learning 8.8's comparison of AnyNet design spaces)
"""

from __future__ import annotations

import math
from pathlib import Path

from archdsl.atomic import write_atomic
from archdsl.runner.sweep.results import TRAINED, Row, pareto_front

ACCURACY, EDF = "accuracy", "edf"
FRONT_COLOUR = "tab:red"
LEARNING_RATE = "learning rate"  # its panel's name, which no parameter can have


def write_plots(folder: Path, rows: list[Row], names: list[str], title: str) -> list[Path]:
    """Both figures, as PNG and SVG, once a configuration has trained; the paths written."""
    done = [row for row in rows if row.status == TRAINED]
    if not done:
        return []
    written = []
    for name, drawn in ((ACCURACY, accuracy_figure(done, title)), (EDF, edf_figure(done, names, title))):
        for suffix in ("png", "svg"):
            path = folder / f"{name}.{suffix}"
            write_atomic(path, lambda tmp, fmt=suffix, figure=drawn: figure.savefig(tmp, format=fmt, dpi=120))
            written.append(path)
    return written


def accuracy_figure(rows: list[Row], title: str):
    figure, axes_grid = _figure(1, 2, (10, 4))
    macs_axes, params_axes = axes_grid[0]
    for axes, cost, label in ((macs_axes, "macs", "MACs per image"), (params_axes, "params", "parameters")):
        points = [(float(getattr(row, cost)), row.accuracy) for row in rows]
        front = pareto_front(points)
        axes.scatter([x for x, _ in points], [y for _, y in points], s=18, color="tab:blue", alpha=0.6,
                     label="configuration")
        axes.plot([points[i][0] for i in front], [points[i][1] for i in front], "-o", color=FRONT_COLOUR,
                  markersize=5, drawstyle="steps-post", label="Pareto front")
        for i in front:
            axes.annotate(rows[i].run, points[i], textcoords="offset points", xytext=(4, -10), fontsize=7)
        _cost_axis(axes, [x for x, _ in points])
        axes.set_xlabel(label)
        axes.set_ylabel("test accuracy")
        axes.grid(True, alpha=0.3)
        axes.legend(loc="best", fontsize=8)
    figure.suptitle(f"{title}: test accuracy against cost ({len(rows)} configurations)")
    return figure


def edf_figure(rows: list[Row], names: list[str], title: str):
    """An EDF per value of each parameter that takes more than one value among the trained rows."""
    panels = [(name, {row.values[name] for row in rows}) for name in names]
    panels = [(name, values) for name, values in panels if len(values) > 1]
    lrs = {row.lr for row in rows}
    if len(lrs) > 1:
        panels.append((LEARNING_RATE, {f"{lr:g}" for lr in lrs}))
    columns = min(3, max(len(panels), 1))
    lines = math.ceil(max(len(panels), 1) / columns)
    figure, axes_grid = _figure(lines, columns, (4.2 * columns, 3.6 * lines))
    axes_list = list(axes_grid.flat)
    if not panels:
        _edf(axes_list[0], {"all": _errors(rows)}, "every configuration")
    for axes, (name, values) in zip(axes_list, panels):
        groups = {value: _errors([row for row in rows if _value(row, name) == value]) for value in _ordered(values)}
        _edf(axes, groups, name)
    for axes in axes_list[len(panels) or 1:]:
        axes.set_visible(False)
    figure.suptitle(f"{title}: error distribution functions ({len(rows)} configurations)")
    return figure


def _cost_axis(axes, costs: list[float]) -> None:
    """A log scale where the costs span a decade or more; numbers written as 12k, 3.4M either way."""
    from matplotlib.ticker import EngFormatter, NullFormatter

    if min(costs) > 0 and max(costs) >= 10 * min(costs):
        axes.set_xscale("log")
        axes.xaxis.set_minor_formatter(NullFormatter())
    axes.xaxis.set_major_formatter(EngFormatter(sep=""))


def _edf(axes, groups: dict[str, list[float]], name: str) -> None:
    for value, errors in groups.items():
        shares = [(i + 1) / len(errors) for i in range(len(errors))]
        # From 0 at the least error up to 1 at the largest, as a step function.
        axes.step([errors[0], *errors], [0.0, *shares], where="post", label=f"{value} ({len(errors)})")
    axes.set_xlabel("test error")
    axes.set_ylabel("cumulative share")
    axes.set_ylim(0, 1.02)
    axes.set_title(name)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, title=f"{name} (configurations)", title_fontsize=8)


def _figure(rows: int, columns: int, size: tuple[float, float]):
    # The object API with an explicit Agg canvas, as the runner's curves: no pyplot, no global backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, columns, squeeze=False)


def _errors(rows: list[Row]) -> list[float]:
    return sorted(1.0 - row.accuracy for row in rows)


def _value(row: Row, name: str) -> str:
    return f"{row.lr:g}" if name == LEARNING_RATE else row.values[name]


def _ordered(values: set[str]) -> list[str]:
    """Values in their natural order (numbers and lists by value), else as text."""
    from archdsl.resolve import parse_value

    try:
        return sorted(values, key=parse_value)
    except TypeError:
        return sorted(values)
