"""The run folder: what a run was made from, and what it measured.

    RUN/spec.arch        the spec's text, as it was when the run started
    RUN/run.json         spec path and --param values, resolved parameters, options, data, environment
    RUN/metrics.csv      one row per finished epoch
    RUN/curves.png/.svg  the learning curves
    RUN/checkpoints/     see checkpoint.py

No torch here: ``archdsl train --resume`` reads run.json before it loads anything heavy.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from archdsl.atomic import is_temporary, write_text_atomic
from archdsl.errors import UsageError
from archdsl.runner.datasets import Normalization
from archdsl.runner.options import TrainOptions

RUN_JSON = "run.json"
SPEC_FILE = "spec.arch"
METRICS_CSV = "metrics.csv"
FORMAT = 1


@dataclass(frozen=True)
class SpecArgs:
    """How the network was named on the command line, so that a resume can load it again."""

    path: str | None = None
    params: tuple[str, ...] = ()
    network: str | None = None
    input: str | None = None

    def describe(self) -> str:
        words = [self.path or "<string>"]
        words += [f"--param {param}" for param in self.params]
        if self.network:
            words.append(f"--network {self.network}")
        if self.input:
            words.append(f"--input {self.input}")
        return " ".join(words)


@dataclass(frozen=True)
class EpochMetrics:
    """One row of metrics.csv. ``seconds`` is the whole epoch (evaluation included);
    ``examples_per_s`` counts training examples over the training time alone."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    examples_per_s: float
    seconds: float
    lr: float

    def line(self, epochs: int) -> str:
        return (
            f"epoch {self.epoch}/{epochs}  train_loss {self.train_loss:.4f}  train_acc {self.train_acc:.4f}  "
            f"test_loss {self.test_loss:.4f}  test_acc {self.test_acc:.4f}  "
            f"{self.examples_per_s:,.0f} ex/s  {self.seconds:.1f} s  lr {self.lr:.4g}"
        )


METRIC_COLUMNS = tuple(field.name for field in fields(EpochMetrics))


@dataclass(frozen=True)
class RunInfo:
    """The contents of run.json that a resume or an eval needs."""

    folder: Path
    options: TrainOptions
    spec: SpecArgs
    spec_hash: str
    network: str
    normalization: Normalization

    def trained_from(self) -> str:
        return f"it was trained from `{self.spec.describe()}` (network '{self.network}')"


def default_folder(network: str) -> Path:
    return Path("runs") / f"{network}-{time.strftime('%Y%m%d-%H%M%S')}"


def create(folder: Path, spec_text: str, record: dict[str, Any]) -> None:
    """Make a new run folder holding the spec text and run.json.

    A folder that already holds files is refused rather than overwritten: it may be another run.
    """
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder", file=str(folder),
                         hint="choose another --out")
    # run.json is written last: a folder without it (the spec copy, temporary files of a write that was
    # killed) is a creation that never finished, and is taken over rather than refused.
    if _foreign_files(folder):
        raise UsageError(
            f"{folder} already holds files; a new run needs an empty or new folder",
            file=str(folder),
            hint=f"continue that run with --resume {folder}, or choose another --out",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the run folder: {err.strerror or err}", file=str(folder),
                         hint="choose another --out, or fix the permissions of its parent folder") from None
    write_text_atomic(folder / SPEC_FILE, spec_text)
    write_text_atomic(folder / RUN_JSON, json.dumps({"format": FORMAT, **record}, indent=2) + "\n")


def _foreign_files(folder: Path) -> bool:
    """Whether the folder holds anything besides what an unfinished ``create`` leaves."""
    if not folder.is_dir():
        return False
    return any(p.name != SPEC_FILE and not is_temporary(p.name) for p in folder.iterdir())


def read(folder: Path) -> RunInfo:
    path = folder / RUN_JSON
    if folder.exists() and not folder.is_dir():
        # Most likely a file inside a run (a checkpoint, run.json): point at the run that holds it.
        run = next((parent for parent in folder.parents if (parent / RUN_JSON).is_file()), None)
        raise UsageError(f"{folder} is a file, not a run folder", file=str(folder),
                         hint=f"pass the run folder that holds it: {run}" if run else
                         f"pass the run folder, the one that holds {RUN_JSON}")
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such run folder", file=str(folder))
    if not path.is_file():
        raise UsageError(f"{folder} is not an archdsl run folder (no {RUN_JSON})", file=str(folder),
                         hint="pass the folder that `archdsl train --out` made")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise TypeError("its top level is not a JSON object")
        if record.get("format") != FORMAT:
            raise UsageError(f"{RUN_JSON} has format {record.get('format')!r}, this archdsl reads {FORMAT}",
                             file=str(path))
        spec = record["spec"]
        return RunInfo(
            folder=folder,
            options=TrainOptions.from_json(record["options"], file=str(path)),
            spec=SpecArgs(spec["path"], tuple(spec["params"]), spec["network"], spec["input"]),
            spec_hash=record["spec_hash"],
            network=record["network"],
            normalization=Normalization.from_json(record["normalization"]),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{RUN_JSON} is damaged: {err}", file=str(path)) from None


def spec_record(spec: SpecArgs) -> dict[str, Any]:
    return {"path": spec.path, "params": list(spec.params), "network": spec.network, "input": spec.input}


def write_metrics(folder: Path, history: list[EpochMetrics]) -> None:
    lines = [",".join(METRIC_COLUMNS)]
    for row in history:
        values = asdict(row)
        lines.append(",".join(_format(name, values[name]) for name in METRIC_COLUMNS))
    write_text_atomic(folder / METRICS_CSV, "\n".join(lines) + "\n")


def _format(name: str, value: float) -> str:
    if name == "epoch":
        return str(value)
    if name in ("examples_per_s", "seconds"):
        return f"{value:.3f}"
    return repr(float(value))
