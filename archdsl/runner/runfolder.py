"""The run folder: what a run was made from, and what it measured.

    RUN/.archdsl-run     written first, so that a folder is provably a run's; the lock of the one
                         process that writes the run (holding its PID)
    RUN/spec.arch        the spec's text, as it was when the run started
    RUN/lib/...          the files it imports, at their paths relative to the spec, so that RUN/spec.arch
                         compiles as it did (``archdsl train --from RUN``)
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
import hashlib
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
from archdsl.runner.untrusted import Count, ParamValue, Record, Sha256, read_limited, record_of, schema_error

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
    ``examples_per_s`` counts training examples over the training time alone. ``val_loss`` and ``val_acc``
    are None in a run without a validation split (--val), whose metrics.csv leaves their columns out."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    examples_per_s: float
    seconds: float
    lr: float
    val_loss: float | None = None
    val_acc: float | None = None

    def line(self, epochs: int) -> str:
        validation = (f"val_loss {self.val_loss:.4f}  val_acc {self.val_acc:.4f}  "
                      if self.val_loss is not None and self.val_acc is not None else "")
        return (
            f"epoch {self.epoch}/{epochs}  train_loss {self.train_loss:.4f}  train_acc {self.train_acc:.4f}  "
            f"{validation}test_loss {self.test_loss:.4f}  test_acc {self.test_acc:.4f}  "
            f"{self.examples_per_s:,.0f} ex/s  {self.seconds:.1f} s  lr {self.lr:.4g}"
        )

    def metric(self, name: str) -> float:
        """A metric by its column name (``val_acc``); a run without validation has none of val_*."""
        value = getattr(self, name)
        if value is None:
            raise UsageError(f"epoch {self.epoch} has no {name}: the run has no validation split")
        return value


METRIC_COLUMNS = tuple(field.name for field in fields(EpochMetrics))
VALIDATION_COLUMNS = ("val_loss", "val_acc")


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
class ScheduleChange:
    """A resume with --reschedule: from ``epoch`` (its first ``step``) on, ``lr``, ``schedule`` and ``warmup``
    (epochs, from there) replace the run's own; run.json lists every change."""

    epoch: int
    step: int
    lr: float
    schedule: str
    warmup: float | None = None


@dataclass(frozen=True)
class InitFrom:
    """--init-from: the run whose weights the network started from, the epoch, and the weights' SHA-256 (a
    run killed in its first epoch starts again from exactly those)."""

    run: str
    epoch: int
    sha256: str


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
    schedule_changes: tuple[ScheduleChange, ...] = ()
    init_from: InitFrom | None = None

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


_ScheduleChangeRecord = record_of(ScheduleChange)


class _SpecFileRecord(Record):
    """A file the spec imports: its path (relative to the spec's folder when it is below it), its SHA-256,
    and whether the run folder keeps a copy (at that path, relative to spec.arch)."""

    path: str
    sha256: Sha256
    kept: bool


_InitRecord = record_of(InitFrom)


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
    param_values: dict[str, ParamValue]
    input_shape: list[Count]
    output_shape: list[Count]
    params: Annotated[int, Field(ge=0)]
    macs: Annotated[int, Field(ge=0)]
    options: _OptionsRecord
    normalization: _NormalizationRecord
    data: _DataRecord
    environment: _EnvironmentRecord
    imports: list[_SpecFileRecord] = Field(default_factory=list)
    init_from: _InitRecord | None = None
    schedule_changes: list[_ScheduleChangeRecord] = Field(default_factory=list)


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
    unfinished = MARKER in names and RUN_JSON not in names and all(
        name == MARKER or is_temporary(name) or _spec_files_only(folder / name) for name in names)
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


def _spec_files_only(path: Path, depth: int = 0) -> bool:
    """Whether ``path`` is a spec file (.arch) or a folder of nothing else: what ``create`` writes before run.json."""
    if path.is_symlink():
        return False
    if path.is_file():
        return path.suffix == ".arch"
    if not path.is_dir() or depth > 32:
        return False
    return all(_spec_files_only(entry, depth + 1) for entry in path.iterdir())


# The names of a run folder's own files, which an imported spec file may not take.
RESERVED = (MARKER, SPEC_FILE, RUN_JSON, METRICS_CSV, "checkpoints", "tensorboard", "curves.png", "curves.svg",
            "confusion.png", "confusion.svg")


def spec_files(net: Any) -> dict[str, tuple[str, bool]]:
    """The files ``net``'s spec imports (a compiled network's ``program``; none for others): by path, their
    text and whether the run folder can keep them. The path is relative to the spec's folder when the file
    lies below it (the default for imports) and does not take a name of the run folder's own; such files
    are kept, others (reached through --allow-import-dir) are only recorded."""
    from archdsl.program import is_file, real_path

    program = getattr(net, "program", None)
    if program is None or not is_file(program.main):
        return {}
    base = real_path(program.main.path).parent
    files = {}
    for key, source in program.sources.items():
        if source is program.main:
            continue
        path = Path(key)
        relative = path.relative_to(base) if path.is_relative_to(base) else None
        if relative is None or relative.parts[0] in RESERVED:
            files[key] = (source.text, False)
        else:
            files[relative.as_posix()] = (source.text, True)
    return files


def create(folder: Path, spec_text: str, record: dict[str, Any],
           imports: dict[str, tuple[str, bool]] | None = None) -> None:
    """Write the spec text, the files it imports and run.json into a folder that ``claim_new`` holds; run.json
    last, so that a folder without it is a creation that never finished."""
    write_text_atomic(folder / SPEC_FILE, spec_text)
    imports = imports or {}
    for path, (text, kept) in imports.items():
        if kept:
            target = folder / path
            _make_folder(target.parent)
            write_text_atomic(target, text)
    listed = [{"path": path, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "kept": kept}
              for path, (text, kept) in sorted(imports.items())]
    write_text_atomic(folder / RUN_JSON, json.dumps({"format": FORMAT, **record, "imports": listed}, indent=2) + "\n")


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {folder}: {err.strerror or err}", file=str(folder)) from None


def record_schedule_change(folder: Path, change: ScheduleChange) -> None:
    """Add a --reschedule to run.json (replacing one recorded from the same step: a resume of it that was
    killed before its first epoch ended), rewritten atomically; ``read`` has validated the file."""
    path = folder / RUN_JSON
    data, _ = read_limited(path, MAX_RECORD_BYTES, f"the {RUN_JSON} of a run")
    record = json.loads(data)
    changes = [entry for entry in record.get("schedule_changes", []) if entry["step"] != change.step]
    record["schedule_changes"] = [*changes, asdict(change)]
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


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
    return _parse(folder, path)


def read_config(path: Path) -> RunInfo:
    """A run.json anywhere (``archdsl train --config``), validated as ``read`` validates a run folder's."""
    if path.is_dir():
        raise UsageError(f"{path} is a folder; --config takes a run.json file", file=str(path),
                         hint=f"to replay the run in that folder: --from {path}")
    if not os.path.lexists(path):
        raise UsageError(f"{path}: no such file", file=str(path))
    return _parse(path.parent, path)


def _parse(folder: Path, path: Path) -> RunInfo:
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
        schedule_changes=tuple(ScheduleChange(**change.model_dump()) for change in record.schedule_changes),
        init_from=InitFrom(**record.init_from.model_dump()) if record.init_from is not None else None,
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


def metric_columns(history: list[EpochMetrics]) -> tuple[str, ...]:
    """metrics.csv's columns: val_loss and val_acc last, and only in a run with a validation split."""
    validated = any(row.val_loss is not None for row in history)
    return tuple(name for name in METRIC_COLUMNS if validated or name not in VALIDATION_COLUMNS)


def read_metrics(folder: Path) -> list[EpochMetrics]:
    """metrics.csv's rows (none when it is missing); a row that is not numbers, or not of its epoch, ends them:
    the checkpoints' own copies of the metrics are what a resume trusts (check_metrics)."""
    path = folder / METRICS_CSV
    if not os.path.lexists(path):
        return []
    data, _ = read_limited(path, MAX_RECORD_BYTES, f"the {METRICS_CSV} of a run")
    lines = data.decode("utf-8", errors="replace").splitlines()
    if not lines:
        return []
    columns = lines[0].split(",")
    rows = []
    for number, line in enumerate(lines[1:], start=1):
        cells = line.split(",")
        try:
            values = {name: float(cell) for name, cell in zip(columns, cells, strict=True) if name in METRIC_COLUMNS}
            row = EpochMetrics(**{**values, "epoch": int(values["epoch"])})
        except (ValueError, TypeError, KeyError):
            break
        if row.epoch != number:
            break
        rows.append(row)
    return rows


def _metrics_lines(history: list[EpochMetrics]) -> list[str]:
    columns = metric_columns(history)
    lines = [",".join(columns)]
    for row in history:
        values = asdict(row)
        lines.append(",".join(_format(name, values[name]) for name in columns))
    return lines


def _format(name: str, value: float) -> str:
    if name == "epoch":
        return str(value)
    if name in ("examples_per_s", "seconds"):
        return f"{value:.3f}"
    return repr(float(value))
