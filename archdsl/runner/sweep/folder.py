"""The sweep folder: the plan, the lock, and what each configuration came to.

    SWEEP/.archdsl-sweep       written first: marks the folder as a sweep's, and is the lock (with the PID)
                               of the one process that runs the sweep
    SWEEP/sweep.json           the plan: the spec, the choices as given, the training options and every
                               configuration (its run folder's name, --param values and learning rate)
    SWEEP/runs/NNNN/           one ordinary run folder per configuration (docs/training.md)
    SWEEP/logs/NNNN.log        what the runner printed while training it
    SWEEP/results/NNNN.json    written when a configuration's training ends: trained, or failed and why
    SWEEP/sweep.csv            one row per configuration (results.py); accuracy.png/.svg, edf.png/.svg (plots.py)

No torch here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from archdsl.atomic import is_temporary, write_text_atomic
from archdsl.errors import UsageError
from archdsl.runner.options import TrainOptions
from archdsl.runner.untrusted import Record, Sha256, read_limited, record_of, schema_error

SWEEP_JSON = "sweep.json"
MARKER = ".archdsl-sweep"
RUNS, LOGS, RESULTS = "runs", "logs", "results"
FORMAT = 1
MAX_RECORD_BYTES = 64 << 20  # a plan of 100,000 configurations with long lists stays far below
TRAINED, FAILED = "trained", "failed"


@dataclass(frozen=True)
class Configuration:
    """One point of the design space: its run folder's name, its ``--param`` values and its learning rate."""

    run: str
    params: tuple[str, ...]  # NAME=VALUE, as --param takes them
    lr: float

    def values(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.params)

    def describe(self) -> str:
        return " ".join([*self.params, f"lr={self.lr:g}"])


@dataclass(frozen=True)
class Plan:
    """What a sweep trains, fixed when it starts: ``--resume`` reads it back from sweep.json."""

    spec: str
    spec_sha256: str  # of the spec file's text: a resume of an edited spec is refused
    network: str | None
    input: str | None
    parameters: tuple[str, ...]  # the -p options as given (NAME=CHOICES)
    lr: str | None  # --lr as given
    samples: int | None
    seed: int
    max_params: int | None
    max_macs: int | None
    options: TrainOptions  # every configuration's, but for its lr and run folder
    configurations: tuple[Configuration, ...]

    def names(self) -> list[str]:
        return [item.split("=", 1)[0] for item in self.parameters]


@dataclass(frozen=True)
class Result:
    """results/NNNN.json: how a configuration's last training ended."""

    status: str  # TRAINED or FAILED
    error: str | None  # the diagnostic, for a failure


_OptionsRecord = record_of(TrainOptions)


class _ConfigurationRecord(Record):
    run: Annotated[str, Field(pattern=r"^[0-9]{4,9}$")]
    params: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*=")]]
    lr: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class _PlanRecord(Record):
    format: Literal[1]
    spec: str
    spec_sha256: Sha256
    network: str | None
    input: str | None
    parameters: list[str]
    lr: str | None
    samples: Annotated[int, Field(ge=1)] | None
    seed: Annotated[int, Field(ge=0)]
    max_params: Annotated[int, Field(ge=1)] | None
    max_macs: Annotated[int, Field(ge=1)] | None
    options: _OptionsRecord
    configurations: Annotated[list[_ConfigurationRecord], Field(min_length=1)]


class _ResultRecord(Record):
    status: Literal["trained", "failed"]
    error: str | None


def run_name(index: int, count: int) -> str:
    """``0007``: the run folder of the 7th of ``count`` configurations, numbered from 1."""
    return f"{index:0{max(4, len(str(count)))}d}"


def check_new(folder: Path) -> None:
    """Refuse, before any work, a folder that a new sweep may not take: one that holds anything but what an
    unfinished ``create`` leaves."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder", file=str(folder), hint="choose another --out")
    names = _names(folder)
    unfinished = MARKER in names and all(name == MARKER or is_temporary(name) for name in names)
    if names and not unfinished:
        raise UsageError(
            f"{folder} already holds files; a new sweep needs an empty or new folder", file=str(folder),
            hint=(f"continue that sweep with --resume {folder}, or choose another --out" if SWEEP_JSON in names
                  else "choose another --out"))


@contextlib.contextmanager
def create(folder: Path, plan: Plan) -> Iterator[None]:
    """Make the sweep folder (its marker first), hold its lock, and write sweep.json; the lock is held until
    the block ends."""
    check_new(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the sweep folder: {err.strerror or err}", file=str(folder),
                         hint="choose another --out, or fix the permissions of its parent folder") from None
    with claim(folder):
        check_new(folder)
        write_text_atomic(folder / SWEEP_JSON, json.dumps(_plan_json(plan), indent=1) + "\n")
        yield


@contextlib.contextmanager
def claim(folder: Path) -> Iterator[None]:
    """Hold the sweep's lock (``flock`` on its marker) while this process runs it; a second process is
    refused with the holder's PID. The kernel drops the lock however the process ends."""
    path = folder / MARKER
    try:
        # O_NOFOLLOW: a link planted at the marker's name must not make us create or lock a file elsewhere.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as err:
        reason = "it is a symbolic link" if err.errno == errno.ELOOP else err.strerror or str(err)
        raise UsageError(f"cannot lock the sweep folder with {MARKER}: {reason}", file=str(folder)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"cannot lock the sweep folder with {MARKER}: it is not a regular file",
                             file=str(folder))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            found = re.search(rb"locked by process (\d+)", os.pread(fd, 200, 0))
            holder = f"process {int(found.group(1))}" if found else "another process"
            raise UsageError(f"{folder} is in use by {holder}, which is running that sweep", file=str(folder),
                             hint="wait for it to finish or stop it; a sweep takes one process at a time") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"archdsl sweep folder, locked by process {os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def read(folder: Path) -> Plan:
    """The plan in ``folder``/sweep.json, checked field by field."""
    path = folder / SWEEP_JSON
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such sweep folder", file=str(folder))
    if not os.path.lexists(path):
        raise UsageError(f"{folder} is not an archdsl sweep folder (no {SWEEP_JSON})", file=str(folder),
                         hint="pass the folder that `archdsl sweep --out` made")
    data, _ = read_limited(path, MAX_RECORD_BYTES, f"the {SWEEP_JSON} of a sweep")
    try:
        record = _PlanRecord.model_validate_json(data)
        options = TrainOptions(**record.options.model_dump())
    except ValidationError as err:
        raise _damaged(path, schema_error(err)) from None
    except UsageError as err:
        raise _damaged(path, f"options: {err.message}") from None
    configurations = tuple(Configuration(c.run, tuple(c.params), c.lr) for c in record.configurations)
    if len({c.run for c in configurations}) != len(configurations):
        raise _damaged(path, "configurations: two have the same run")
    return Plan(record.spec, record.spec_sha256, record.network, record.input, tuple(record.parameters), record.lr,
                record.samples, record.seed, record.max_params, record.max_macs, options, configurations)


def write_result(folder: Path, run: str, result: Result) -> None:
    (folder / RESULTS).mkdir(exist_ok=True)
    write_text_atomic(folder / RESULTS / f"{run}.json", json.dumps(result.__dict__) + "\n")


def read_results(folder: Path, plan: Plan) -> dict[str, Result]:
    """The results recorded so far, by run; a configuration without one has not ended (or never began)."""
    found = {}
    for configuration in plan.configurations:
        path = folder / RESULTS / f"{configuration.run}.json"
        if not os.path.lexists(path):
            continue
        data, _ = read_limited(path, MAX_RECORD_BYTES, "a sweep's result")
        try:
            record = _ResultRecord.model_validate_json(data)
        except ValidationError as err:
            raise UsageError(f"{path.name} is damaged: {schema_error(err)}", file=str(path),
                             hint="remove it: the configuration is then trained (or its run resumed) again") from None
        found[configuration.run] = Result(record.status, record.error)
    return found


def _plan_json(plan: Plan) -> dict:
    options = plan.options.to_json()
    for per_configuration in ("lr", "out"):
        options.pop(per_configuration)
    return {
        "format": FORMAT, "spec": plan.spec, "spec_sha256": plan.spec_sha256, "network": plan.network,
        "input": plan.input, "parameters": list(plan.parameters), "lr": plan.lr, "samples": plan.samples,
        "seed": plan.seed, "max_params": plan.max_params, "max_macs": plan.max_macs, "options": options,
        "configurations": [{"run": c.run, "params": list(c.params), "lr": c.lr} for c in plan.configurations],
    }


def _damaged(path: Path, problem: str) -> UsageError:
    return UsageError(f"{SWEEP_JSON} is damaged: {problem}", file=str(path),
                      hint="archdsl writes sweep.json once, when a sweep starts; restore it, or start a new sweep")


def _names(folder: Path) -> set[str]:
    try:
        return {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()
    except OSError as err:
        raise UsageError(f"cannot list the sweep folder: {err.strerror or err}", file=str(folder)) from None
