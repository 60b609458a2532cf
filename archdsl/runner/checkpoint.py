"""Checkpoints, one per finished epoch, each safe to resume from whenever the run is killed, and
each refused rather than trusted when it was damaged or came from someone else.

    RUN/checkpoints/epoch-0003.safetensors  the weights; metadata: spec hash, network, epoch
    RUN/checkpoints/epoch-0003.state.pt     optimiser and grad-scaler state, global step, epoch,
                                            the metrics so far (torch.load(weights_only=True))
    RUN/checkpoints/epoch-0003.json         the manifest: the SHA-256 of both files

All three are written atomically, the manifest last: a checkpoint exists once its manifest does,
so a kill at any moment leaves the last complete one intact; files without a manifest are the
leftovers of an interrupted save and are pruned, with older checkpoints, by the next one. Besides the
newest, a save keeps the epochs it is asked to (the best epoch, selection.py); a run with ``--keep best``
writes ``ended.json`` when it ends and then removes its last checkpoint unless that is the best.

Loading never runs code from the files: weights go through safetensors, the state through
``torch.load(weights_only=True)`` (never retried without it). Before either is parsed, its bytes
must match the manifest's SHA-256; the weights must then have the network's own names and shapes
and be finite.

No RNG state is saved, on purpose: every random draw of epoch e (the data order, dropout) comes
from generators seeded with (seed, epoch), so a resumed run draws exactly what an uninterrupted
one would, on any number of processes.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import torch
from pydantic import ConfigDict, Field, ValidationError, field_validator

from archdsl import ir
from archdsl.atomic import fsync_folder, is_temporary, remove_temporary, write_atomic
from archdsl.errors import UsageError, first_line
from archdsl.runner.runfolder import EpochMetrics
from archdsl.runner.untrusted import Count, Record, Sha256, read_limited, record_of, schema_error

FOLDER = "checkpoints"
# What to do about a checkpoint of another spec: eval, export and --resume compile the spec with the
# run's own --param, --network and --input unless the command line gives others.
SAME_SPEC = "pass that spec with those --param and --input values, or with none to take the run's own"
MANIFEST_PATTERN = re.compile(r"epoch-([0-9]+)\.json")  # [0-9], not \d: no other scripts' digits
ENDED = "ended.json"
MANIFEST_FORMAT = 1
MAX_MANIFEST_BYTES = 64 << 10  # a manifest is ~250 bytes
# Beyond the tensors themselves, a checkpoint file holds a header (safetensors) or a zip directory and
# the pickled structure around them (the state, with the metrics of every epoch): far less than this.
SLACK_BYTES = 16 << 20
SLACK_PER_TENSOR = 4 << 10
# Adam and AdamW keep two tensors of each parameter's size (SGD's momentum one), the step count aside.
OPTIMIZER_COPIES = 2


class Spec(Protocol):
    name: str
    fingerprint: str
    param_values: dict[str, ir.Value]
    input_shape: tuple[int, ...]


def spec_hash(net: Spec) -> str:
    """The identity of a compiled network: name, resolved parameters, input shape and the structure
    of its resolved graph (``fingerprint``, which sees into imported blocks too).

    The spec's text is left out on purpose: a new comment or a renamed block parameter does not
    change what the weights fit, so it should not orphan a run's checkpoints.
    """
    identity = {
        "network": net.name,
        "params": net.param_values,
        "input_shape": list(net.input_shape),
        "structure": net.fingerprint,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    epoch: int
    weights: Path
    state: Path
    manifest: Path


@dataclass(frozen=True)
class TrainingState:
    """A checkpoint's state file, validated: every field of the right type, and consistent with the
    checkpoint it belongs to (its epoch, the metrics of epochs 1 to that epoch)."""

    epoch: int
    step: int
    optimizer: dict[str, Any]  # checked against the run's own optimiser by optim.load_optimizer_state
    scaler: dict[str, Any]
    history: tuple[EpochMetrics, ...]


_EpochRecord = record_of(EpochMetrics)


class _Manifest(Record):
    format: Literal[1]
    epoch: Count
    sha256: dict[str, Sha256]


class Ended(Record):
    """ended.json: a run with --keep best ended after ``epoch`` and kept only the checkpoint of ``best``."""

    format: Literal[1]
    epoch: Count
    best: Count


class _ParamGroup(Record):
    model_config = ConfigDict(extra="allow")  # the optimiser's hyperparameters; the run's own are used
    params: list[Annotated[int, Field(ge=0)]]


class _OptimizerState(Record):
    model_config = ConfigDict(arbitrary_types_allowed=True)  # its tensors, type-checked with isinstance
    state: dict[Annotated[int, Field(ge=0)], dict[str, torch.Tensor]]
    param_groups: Annotated[list[_ParamGroup], Field(min_length=1)]


class _ScalerState(Record):
    scale: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    growth_factor: Annotated[float, Field(gt=1.0, allow_inf_nan=False)]
    backoff_factor: Annotated[float, Field(gt=0.0, lt=1.0)]
    growth_interval: Count
    growth_tracker: Annotated[int, Field(ge=0, alias="_growth_tracker")]


class _State(Record):
    epoch: Count
    step: Annotated[int, Field(ge=0)]
    optimizer: _OptimizerState
    scaler: _ScalerState | None
    history: list[_EpochRecord]
    spec_hash: str

    @field_validator("scaler", mode="before")
    @classmethod
    def _no_scaler(cls, value: Any) -> Any:
        return None if value == {} else value  # what a run without a grad scaler saves


def latest(run_dir: Path) -> Checkpoint | None:
    """The newest complete checkpoint of a run (one with a manifest), or None when no epoch has finished.
    Only the names ``save`` writes count: not ``epoch-3.json`` nor ``epoch-0000.json``."""
    folder = run_dir / FOLDER
    if not folder.is_dir():
        return None
    names = {p.name for p in folder.iterdir()}
    epochs = [int(match.group(1)) for name in names if (match := MANIFEST_PATTERN.fullmatch(name))]
    epochs = [epoch for epoch in epochs if epoch >= 1 and _paths(run_dir, epoch).manifest.name in names]
    return _paths(run_dir, max(epochs)) if epochs else None


def at(run_dir: Path, epoch: int) -> Checkpoint | None:
    """The complete checkpoint of ``epoch`` (its manifest written), or None."""
    found = _paths(run_dir, epoch)
    return found if found.manifest.is_file() else None


def save(run_dir: Path, model: torch.nn.Module, state: dict[str, Any], *, spec: str, network: str,
         keep: tuple[int, ...] = ()) -> Checkpoint:
    """Write the checkpoint of ``state["epoch"]`` and drop the older ones, except those of the epochs in ``keep``.

    Each file is serialised in memory and written through write_atomic: a full disk or any other
    failure to write is then the file system's own error, reported naming the file (the libraries'
    writers fail with exceptions of their own: safetensors' SafetensorError, torch's "unexpected pos"),
    and the manifest's hash is of exactly the bytes that were meant to reach the disk.
    """
    from safetensors.torch import save as serialize_tensors

    epoch = int(state["epoch"])
    target = _paths(run_dir, epoch)
    folder = target.weights.parent
    try:
        folder.mkdir(exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {folder}: {err.strerror or err}", file=str(folder)) from None
    metadata = {"archdsl_spec_hash": spec, "network": network, "epoch": str(epoch)}
    buffer = io.BytesIO()
    torch.save({**state, "spec_hash": spec}, buffer)
    digests = {
        target.weights.name: _write_hashed(target.weights, serialize_tensors(_stored_tensors(model), metadata)),
        target.state.name: _write_hashed(target.state, buffer.getvalue()),
    }
    manifest = {"format": MANIFEST_FORMAT, "epoch": epoch, "sha256": digests}
    _write_hashed(target.manifest, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    kept = [target, *(_paths(run_dir, epoch) for epoch in keep)]
    _prune(folder, {path.name for checkpoint in kept for path in (checkpoint.weights, checkpoint.state,
                                                                   checkpoint.manifest)})
    return target


def end_keeping_best(run_dir: Path, last: int, best: int) -> None:
    """A --keep best run has ended after epoch ``last``: record it in ended.json, then remove every checkpoint
    but the best's (a kill in between leaves both, and the record)."""
    record = {"format": 1, "epoch": last, "best": best}
    _write_hashed(run_dir / FOLDER / ENDED, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    kept = _paths(run_dir, best)
    _prune(run_dir / FOLDER, {kept.weights.name, kept.state.name, kept.manifest.name})


def ended(run_dir: Path) -> Ended | None:
    """The ended.json of a --keep best run that has ended, validated; None while it runs (or for other runs)."""
    path = run_dir / FOLDER / ENDED
    if not path.exists():
        return None
    data, _ = read_limited(path, MAX_MANIFEST_BYTES, "an ended.json")
    try:
        return Ended.model_validate_json(data)
    except ValidationError as err:
        raise UsageError(f"{ENDED} is damaged: {schema_error(err)}", file=str(path)) from None


def _prune(folder: Path, keep: set[str]) -> None:
    """Remove the checkpoints not in ``keep``, manifests first: a kill midway leaves no manifest whose files
    are gone (an older epoch's, or the last one of a --keep best run)."""
    for stale in sorted(folder.iterdir(), key=lambda path: not MANIFEST_PATTERN.fullmatch(path.name)):
        # The temporaries of a save that a kill interrupted, and older epochs (not a folder planted there).
        if is_temporary(stale.name):
            remove_temporary(stale)
        elif stale.name.startswith("epoch-") and stale.name not in keep and not stale.is_dir():
            stale.unlink(missing_ok=True)
    fsync_folder(folder)


def load_state(checkpoint: Checkpoint, model: torch.nn.Module, *, spec: str, trained_from: str,
               remedy: str = SAME_SPEC) -> TrainingState:
    """The training state for ``model``, refused if damaged, larger than that network's state can be, from
    another spec (the hint: ``trained_from; remedy``), or not what archdsl writes. Never unpickles
    arbitrary objects."""
    path = checkpoint.state
    data = _verified_bytes(checkpoint, path, _state_limit(model))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols; refusals still raise
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UsageError(
            f"{path.name} holds more than tensors and plain data; refused, since loading it could run code"
            f" ({_refused_global(err)})",
            file=str(path),
            hint="only load checkpoints that archdsl wrote; never unpickle a file from others",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise UsageError(f"cannot read the checkpoint {path.name}: {first_line(err)}", file=str(path)) from None
    if not isinstance(state, dict) or "spec_hash" not in state:
        raise UsageError(f"{path.name} is not an archdsl checkpoint", file=str(path))
    _check_spec(state["spec_hash"], spec, path, trained_from, remedy)
    try:
        record = _State.model_validate(state)
    except ValidationError as err:
        raise damaged(path, schema_error(err)) from None
    if record.epoch != checkpoint.epoch:
        raise damaged(path, f"it says epoch {record.epoch}, but it is the checkpoint of epoch {checkpoint.epoch}")
    epochs = [row.epoch for row in record.history]
    if epochs != list(range(1, record.epoch + 1)):
        raise damaged(path, f"its metrics are of epochs {_epochs(epochs)}, not of epochs 1 to {record.epoch}")
    return TrainingState(record.epoch, record.step, state["optimizer"], state["scaler"],
                         tuple(EpochMetrics(**row.model_dump()) for row in record.history))


def load_weights(model: torch.nn.Module, checkpoint: Checkpoint, *, spec: str, trained_from: str,
                 remedy: str = SAME_SPEC) -> None:
    """Load the weights into ``model`` (its own device), refused if damaged, larger than that network's
    weights can be, from another spec or epoch, not of the network's names and shapes, or not finite."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    path = checkpoint.weights
    data = _verified_bytes(checkpoint, path, _weights_limit(model))
    try:
        tensors = load_tensors(data)
        metadata = _metadata(data)
    except (SafetensorError, ValueError) as err:
        raise UsageError(f"cannot read the weights {path.name}: {first_line(err)}", file=str(path)) from None
    _check_spec(metadata.get("archdsl_spec_hash"), spec, path, trained_from, remedy)
    if metadata.get("epoch") != str(checkpoint.epoch):
        raise damaged(path, f"it holds the weights of epoch {metadata.get('epoch')}, "
                             f"but it is the checkpoint of epoch {checkpoint.epoch}")
    _check_tensors(tensors, model, path)
    with torch.no_grad():
        model.load_state_dict(tensors, strict=False)  # _check_tensors did the strict part, aliases included


def load_matching(model: torch.nn.Module, checkpoint: Checkpoint) -> str:
    """Load another run's weights into ``model`` (fine-tuning, --init-from): every tensor of the network must be
    in the file with its shape, and the file must hold no others; all that differs is listed in one error.
    Returns the SHA-256 of the weights file, which the manifest vouched for."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    path = checkpoint.weights
    data = _verified_bytes(checkpoint, path, _weights_limit(model))
    try:
        tensors = load_tensors(data)
    except (SafetensorError, ValueError) as err:
        raise UsageError(f"cannot read the weights {path.name}: {first_line(err)}", file=str(path)) from None
    own = model.state_dict()
    stored = {_storage_key(own[name]) for name in tensors if name in own}
    problems = [f"{name}: the network's is {_shape(own[name].shape)}, the file's {_shape(tensors[name].shape)}"
                for name in own if name in tensors and tensors[name].shape != own[name].shape]
    problems += [f"{name}: not in the file" for name in own
                 if name not in tensors and _storage_key(own[name]) not in stored]
    problems += [f"{name}: in the file, not in the network" for name in tensors if name not in own]
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise UsageError(f"the weights of {path.name} do not fit the network; {len(problems)} tensor"
                         f"{'s differ' if len(problems) != 1 else ' differs'}:\n  " + "\n  ".join(shown),
                         file=str(path), hint="--init-from takes a run of a network with the same layers and shapes")
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UsageError(f"tensor '{name}' in {path.name} holds NaN or infinite values", file=str(path))
    with torch.no_grad():
        model.load_state_dict(tensors, strict=False)
    return _manifest(checkpoint).sha256[path.name]


def _write_hashed(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically and return its SHA-256."""
    # Through write_atomic itself, which the fault-injection test hooks to kill inside each write.
    write_atomic(path, lambda tmp: tmp.write_bytes(data))
    return hashlib.sha256(data).hexdigest()


def _stored_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as safetensors stores it: one name of each group of tied tensors, contiguous
    (a channels_last weight is not), as ``safetensors.torch.save_model`` would write it."""
    stored: dict[str, torch.Tensor] = {}
    seen = set()
    for name, tensor in model.state_dict().items():
        if _storage_key(tensor) not in seen:
            seen.add(_storage_key(tensor))
            stored[name] = tensor.contiguous()
    return stored


def _weights_limit(model: torch.nn.Module) -> int:
    sizes = {_storage_key(t): t.numel() * t.element_size() for t in model.state_dict().values()}
    return sum(sizes.values()) + SLACK_BYTES + SLACK_PER_TENSOR * len(sizes)


def _state_limit(model: torch.nn.Module) -> int:
    params = [p.numel() * p.element_size() for p in model.parameters()]
    return OPTIMIZER_COPIES * sum(params) + SLACK_BYTES + OPTIMIZER_COPIES * SLACK_PER_TENSOR * len(params)


def _verified_bytes(checkpoint: Checkpoint, path: Path, limit: int) -> bytes:
    """The bytes of ``path``, refused unless their SHA-256 is the one the manifest recorded; neither file
    is read beyond what such a file can hold (a link to /dev/zero, a sparse file of 50 GB)."""
    expected = _manifest(checkpoint).sha256.get(path.name)
    if expected is None:
        raise UsageError(f"the manifest {checkpoint.manifest.name} has no SHA-256 for {path.name}",
                         file=str(checkpoint.manifest))
    data, found = read_limited(path, limit, "a checkpoint of this network")
    if found != expected:
        raise UsageError(
            f"{path.name} has changed since it was written: its SHA-256 is {found[:16]}..., "
            f"the manifest {checkpoint.manifest.name} recorded {expected[:16]}...",
            file=str(path),
            hint="the file is damaged or was replaced; refusing to load it",
        )
    return data


def _manifest(checkpoint: Checkpoint) -> _Manifest:
    path = checkpoint.manifest
    data, _ = read_limited(path, MAX_MANIFEST_BYTES, "a manifest")
    try:
        manifest = _Manifest.model_validate_json(data)
    except ValidationError as err:
        raise UsageError(f"the manifest {path.name} is damaged: {schema_error(err)}", file=str(path)) from None
    if manifest.epoch != checkpoint.epoch:
        raise UsageError(f"the manifest {path.name} is damaged: it says epoch {manifest.epoch}", file=str(path))
    return manifest


def damaged(path: Path, problem: str) -> UsageError:
    """The refusal of a checkpoint file that is well-formed but wrong."""
    return UsageError(f"{path.name} is damaged: {problem}", file=str(path),
                      hint="the file was altered, or comes from another run; refusing to load it")


def _epochs(epochs: list[int]) -> str:
    shown = ", ".join(map(str, epochs[:6])) + (", ..." if len(epochs) > 6 else "")
    return shown or "none"


def _check_tensors(tensors: dict[str, torch.Tensor], model: torch.nn.Module, path: Path) -> None:
    """The file's tensors must be the network's own: the same names, the same shapes, finite values.

    safetensors stores one name of each group of tied tensors, so a name missing from the file is
    fine when the network ties it to one that is present.
    """
    own = model.state_dict()
    unexpected = sorted(set(tensors) - set(own))
    if unexpected:
        raise UsageError(f"{path.name} holds tensors the network does not have: {', '.join(unexpected[:5])}",
                         file=str(path))
    stored = {_storage_key(own[name]) for name in tensors}
    missing = sorted(name for name in own if name not in tensors and _storage_key(own[name]) not in stored)
    if missing:
        raise UsageError(f"{path.name} lacks tensors of the network: {', '.join(missing[:5])}", file=str(path))
    for name, tensor in tensors.items():
        if tensor.shape != own[name].shape:
            raise UsageError(
                f"tensor '{name}' in {path.name} has shape {_shape(tensor.shape)}, "
                f"the network's has shape {_shape(own[name].shape)}",
                file=str(path),
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UsageError(f"tensor '{name}' in {path.name} holds NaN or infinite values", file=str(path),
                             hint="the run diverged before this checkpoint, or the file was altered")


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes that ``safetensors.torch.load`` has already accepted:
    an 8-byte little-endian header length, then the JSON header."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]).get("__metadata__") or {}


def _storage_key(tensor: torch.Tensor) -> tuple[int, int, tuple[int, ...]]:
    return tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape)


def _refused_global(err: Exception) -> str:
    """The line of torch's weights_only message that names what was refused, without its advice
    to retry with weights_only=False (which is exactly what must not be done with such a file)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if "Unsupported" in line or "global" in line.lower()]
    return (named or lines or [type(err).__name__])[0].removeprefix("WeightsUnpickler error: ")


def _shape(shape: torch.Size) -> str:
    return f"[{ir.format_shape(tuple(shape), ', ')}]"


def _check_spec(found: str | None, expected: str, path: Path, trained_from: str, remedy: str) -> None:
    if found != expected:
        raise UsageError("this checkpoint was trained from a different spec (or different --param or --input values)",
                         file=str(path), hint=f"{trained_from}; {remedy}")


def _paths(run_dir: Path, epoch: int) -> Checkpoint:
    folder, stem = run_dir / FOLDER, f"epoch-{epoch:04d}"
    return Checkpoint(epoch, folder / f"{stem}.safetensors", folder / f"{stem}.state.pt", folder / f"{stem}.json")
