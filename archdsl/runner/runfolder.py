"""The run folder: what a run was made from, and what it measured.

    RUN/.archdsl-run     written first, so that a folder is provably a run's; the lock of the one
                         process that writes the run (holding its PID)
    RUN/spec.arch        the spec's text, as it was when the run started
    RUN/run.json         spec path and --param values, resolved parameters, options, data, environment
    RUN/metrics.csv      one row per finished epoch
    RUN/curves.png/.svg  the learning curves
    RUN/checkpoints/     see checkpoint.py

No torch here: ``archdsl train --resume`` reads run.json before it loads anything heavy.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from archdsl.atomic import is_temporary, remove_temporary, write_text_atomic
from archdsl.errors import UsageError
from archdsl.runner.datasets import Normalization
from archdsl.runner.options import TrainOptions
from archdsl.runner.untrusted import Count, Record, Sha256, read_limited, record_of, schema_error

RUN_JSON = "run.json"
SPEC_FILE = "spec.arch"
METRICS_CSV = "metrics.csv"
MARKER = ".archdsl-run"
FORMAT = 1
# Far above what archdsl writes (run.json is a few kB, plus the class names; metrics.csv ~100 bytes an epoch).
MAX_RECORD_BYTES = 16 << 20


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
class DataInfo:
    """What run.json says the run's data was: a resume must find the same. ``sha256`` is the images' and
    labels' (train.data_sha256); None in runs made before it was recorded."""

    train_examples: int
    test_examples: int
    image_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    sha256: str | None = None


@dataclass(frozen=True)
class RunInfo:
    """The contents of run.json that a resume or an eval needs."""

    folder: Path
    options: TrainOptions
    spec: SpecArgs
    spec_hash: str
    network: str
    normalization: Normalization
    data: DataInfo

    def trained_from(self) -> str:
        return f"it was trained from `{self.spec.describe()}` (network '{self.network}')"


Pixel = Annotated[float, Field(ge=0.0, le=255.0, allow_inf_nan=False)]
Spread = Annotated[float, Field(gt=0.0, le=255.0, allow_inf_nan=False)]


_OptionsRecord = record_of(TrainOptions)


class _SpecRecord(Record):
    path: str | None
    params: list[str]
    network: str | None
    input: str | None


class _NormalizationRecord(Record):
    mean: list[Pixel]
    std: list[Spread]


class _DataRecord(Record):
    name: str
    source: str
    train_examples: Count
    test_examples: Count
    image_shape: tuple[Count, Count, Count]
    classes: Annotated[list[str], Field(min_length=1)]
    sha256: Sha256 | None = None


class _EnvironmentRecord(Record):
    python: str
    torch: str
    device: str
    device_name: str
    world_size: Count
    created: str


class _RunRecord(Record):
    """run.json, every field: written once by ``create``, read by --resume, eval and export."""

    format: Literal[1]
    network: str
    spec: _SpecRecord
    spec_hash: Sha256
    param_values: dict[str, int | float]
    input_shape: list[Count]
    output_shape: list[Count]
    params: Annotated[int, Field(ge=0)]
    macs: Annotated[int, Field(ge=0)]
    options: _OptionsRecord
    normalization: _NormalizationRecord
    data: _DataRecord
    environment: _EnvironmentRecord


def default_folder(network: str) -> Path:
    return Path("runs") / f"{network}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_new(folder: Path) -> None:
    """Refuse, before any work, a folder that a new run may not take: one that exists and is not a
    folder, or that holds anything but what an unfinished ``create`` leaves (the marker first of all).

    A folder without the marker is the user's own, whatever it holds: even a lone spec.arch may be
    their spec, which a new run would overwrite.
    """
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder", file=str(folder), hint="choose another --out")
    names = _names(folder)
    unfinished = MARKER in names and all(name in (MARKER, SPEC_FILE) or is_temporary(name) for name in names)
    if names and not unfinished:
        raise UsageError(
            f"{folder} already holds files; a new run needs an empty or new folder",
            file=str(folder),
            hint=(f"continue that run with --resume {folder}, or choose another --out" if RUN_JSON in names
                  else "choose another --out"),
        )


@contextlib.contextmanager
def claim_new(folder: Path) -> Iterator[None]:
    """Hold ``folder`` for a new run: made if need be, its marker written first, and locked.

    The folder is checked again once the lock is held, since another process may have made a run
    there meanwhile; the leftovers of a creation that was killed are removed.
    """
    check_new(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the run folder: {err.strerror or err}", file=str(folder),
                         hint="choose another --out, or fix the permissions of its parent folder") from None
    with claim(folder):
        check_new(folder)
        for name in _names(folder):
            if is_temporary(name):
                remove_temporary(folder / name)
        yield


@contextlib.contextmanager
def claim(folder: Path) -> Iterator[None]:
    """Hold the run folder's lock while this process writes it; a second writer is refused with the
    holder's PID. The lock (``flock`` on the marker) goes with the process, however it ends, so a
    killed run never leaves a stale one behind."""
    fd = _lock(folder)
    try:
        yield
    finally:
        os.close(fd)


def _lock(folder: Path) -> int:
    path = folder / MARKER
    try:
        # O_NOFOLLOW: a link planted at the marker's name must not make us create or lock a file elsewhere.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as err:
        reason = "it is a symbolic link" if err.errno == errno.ELOOP else err.strerror or str(err)
        raise UsageError(f"cannot lock the run folder with {MARKER}: {reason}", file=str(folder),
                         hint="archdsl writes that file itself; remove whatever is in its place") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"cannot lock the run folder with {MARKER}: it is not a regular file", file=str(folder),
                             hint="archdsl writes that file itself; remove whatever is in its place")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"{folder} is in use by {_holder(fd)}, which is writing that run", file=str(folder),
                             hint="wait for it to finish or stop it; one run folder takes one writer at a time"
                             ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"archdsl run folder, locked by process {os.getpid()}\n".encode())
    except OSError as err:
        os.close(fd)
        raise UsageError(f"cannot lock the run folder: {err.strerror or err}", file=str(folder)) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _holder(fd: int) -> str:
    """Which process holds the lock, as the marker says (it writes its PID once it holds it)."""
    found = re.search(rb"locked by process (\d+)", os.pread(fd, 200, 0))
    return f"process {int(found.group(1))}" if found else "another process"


def _names(folder: Path) -> set[str]:
    try:
        return {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()
    except OSError as err:
        raise UsageError(f"cannot list the run folder: {err.strerror or err}", file=str(folder)) from None


def create(folder: Path, spec_text: str, record: dict[str, Any]) -> None:
    """Write the spec text and run.json into a folder that ``claim_new`` holds; run.json last, so that a
    folder without it is a creation that never finished."""
    write_text_atomic(folder / SPEC_FILE, spec_text)
    write_text_atomic(folder / RUN_JSON, json.dumps({"format": FORMAT, **record}, indent=2) + "\n")


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
    if not os.path.lexists(path):
        raise UsageError(f"{folder} is not an archdsl run folder (no {RUN_JSON})", file=str(folder),
                         hint="pass the folder that `archdsl train --out` made")
    data, _ = read_limited(path, MAX_RECORD_BYTES, f"the {RUN_JSON} of a run")
    try:
        record = _RunRecord.model_validate_json(data)
        options = TrainOptions(**record.options.model_dump())
    except ValidationError as err:
        raise _damaged(path, schema_error(err)) from None
    except UsageError as err:  # a value that TrainOptions refuses, such as a negative --lr
        raise _damaged(path, f"options: {err.message}") from None
    if not len(record.normalization.mean) == len(record.normalization.std) == record.data.image_shape[0]:
        raise _damaged(path, "normalization: mean and std need one value per channel of data.image_shape")
    data_record = record.data
    return RunInfo(
        folder=folder,
        options=options,
        spec=SpecArgs(record.spec.path, tuple(record.spec.params), record.spec.network, record.spec.input),
        spec_hash=record.spec_hash,
        network=record.network,
        normalization=Normalization(tuple(record.normalization.mean), tuple(record.normalization.std)),
        data=DataInfo(data_record.train_examples, data_record.test_examples, data_record.image_shape,
                      tuple(data_record.classes), data_record.sha256),
    )


def _damaged(path: Path, problem: str) -> UsageError:
    return UsageError(f"{RUN_JSON} is damaged: {problem}", file=str(path),
                      hint="archdsl writes run.json once, when a run starts; restore it, or start a new run")


def spec_record(spec: SpecArgs) -> dict[str, Any]:
    return {"path": spec.path, "params": list(spec.params), "network": spec.network, "input": spec.input}


def write_metrics(folder: Path, history: list[EpochMetrics]) -> None:
    write_text_atomic(folder / METRICS_CSV, "\n".join(_metrics_lines(history)) + "\n")


def check_metrics(folder: Path, history: list[EpochMetrics], checkpoint: Path) -> None:
    """metrics.csv must agree with a checkpoint's history: the same rows, and at most one more (the
    epoch whose checkpoint a kill interrupted; it is redone). No metrics.csv is nothing to disagree with."""
    path = folder / METRICS_CSV
    if not os.path.lexists(path):
        return
    data, _ = read_limited(path, MAX_RECORD_BYTES, f"the {METRICS_CSV} of a run")
    found = data.decode("utf-8", errors="replace").splitlines()
    expected = _metrics_lines(history)
    differs = next((i for i, (a, b) in enumerate(zip(found, expected)) if a != b), None)
    if differs is None and len(expected) <= len(found) <= len(expected) + 1:
        return
    problem = ("its header differs" if differs == 0 else
               f"its row of epoch {differs} differs" if differs is not None else
               f"it has rows for {max(len(found) - 1, 0)} epochs")
    raise UsageError(
        f"{METRICS_CSV} does not match the checkpoint of epoch {len(history)} ({checkpoint.name}): {problem}",
        file=str(path), hint="the run folder was edited or mixes files of different runs; refusing to continue it",
    )


def _metrics_lines(history: list[EpochMetrics]) -> list[str]:
    lines = [",".join(METRIC_COLUMNS)]
    for row in history:
        values = asdict(row)
        lines.append(",".join(_format(name, values[name]) for name in METRIC_COLUMNS))
    return lines


def _format(name: str, value: float) -> str:
    if name == "epoch":
        return str(value)
    if name in ("examples_per_s", "seconds"):
        return f"{value:.3f}"
    return repr(float(value))
