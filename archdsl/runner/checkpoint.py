"""Checkpoints, one per finished epoch, each safe to resume from whenever the run is killed, and
each refused rather than trusted when it was damaged or came from someone else.

    RUN/checkpoints/epoch-0003.safetensors  the weights; metadata: spec hash, network, epoch
    RUN/checkpoints/epoch-0003.state.pt     optimiser and grad-scaler state, global step, epoch,
                                            the metrics so far (torch.load(weights_only=True))
    RUN/checkpoints/epoch-0003.json         the manifest: the SHA-256 of both files

All three are written atomically, the manifest last: a checkpoint exists once its manifest does,
so a kill at any moment leaves the last complete one intact; files without a manifest are the
leftovers of an interrupted save and are pruned, with older checkpoints, by the next one.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from archdsl import ir
from archdsl.atomic import fsync_folder, is_temporary, write_atomic
from archdsl.errors import UsageError, first_line

FOLDER = "checkpoints"
# What to do about a checkpoint of another spec: eval, export and --resume compile the spec with the
# run's own --param, --network and --input unless the command line gives others.
SAME_SPEC = "pass that spec with those --param and --input values, or with none to take the run's own"
MANIFEST_PATTERN = re.compile(r"epoch-(\d+)\.json")
MANIFEST_FORMAT = 1


class Spec(Protocol):
    name: str
    fingerprint: str
    param_values: dict[str, int | float]
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


def latest(run_dir: Path) -> Checkpoint | None:
    """The newest complete checkpoint of a run (one with a manifest), or None when no epoch has finished."""
    folder = run_dir / FOLDER
    if not folder.is_dir():
        return None
    epochs = [int(match.group(1)) for p in folder.iterdir() if (match := MANIFEST_PATTERN.fullmatch(p.name))]
    return _paths(run_dir, max(epochs)) if epochs else None


def save(run_dir: Path, model: torch.nn.Module, state: dict[str, Any], *, spec: str, network: str) -> Checkpoint:
    """Write the checkpoint of ``state["epoch"]`` and drop the older ones."""
    from safetensors.torch import save_model

    epoch = int(state["epoch"])
    target = _paths(run_dir, epoch)
    folder = target.weights.parent
    try:
        folder.mkdir(exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {folder}: {err.strerror or err}", file=str(folder)) from None
    metadata = {"archdsl_spec_hash": spec, "network": network, "epoch": str(epoch)}
    digests = {
        target.weights.name: _write_hashed(target.weights, lambda tmp: save_model(model, str(tmp), metadata=metadata)),
        target.state.name: _write_hashed(target.state, lambda tmp: torch.save({**state, "spec_hash": spec}, tmp)),
    }
    manifest = {"format": MANIFEST_FORMAT, "epoch": epoch, "sha256": digests}
    text = json.dumps(manifest, indent=2) + "\n"
    # All three through write_atomic itself, which the fault-injection test hooks to kill inside each write.
    write_atomic(target.manifest, lambda tmp: tmp.write_bytes(text.encode("utf-8")))
    keep = {target.weights.name, target.state.name, target.manifest.name}
    for stale in folder.iterdir():
        # Older epochs, and the temporaries of a save that a kill interrupted.
        if (stale.name.startswith("epoch-") or is_temporary(stale.name)) and stale.name not in keep:
            stale.unlink(missing_ok=True)
    fsync_folder(folder)
    return target


def load_state(checkpoint: Checkpoint, *, spec: str, trained_from: str,
               remedy: str = SAME_SPEC) -> dict[str, Any]:
    """The training state, refused if damaged or from another spec (the hint: ``trained_from; remedy``).
    Never unpickles arbitrary objects."""
    data = _verified_bytes(checkpoint, checkpoint.state)
    path = checkpoint.state
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
    return state


def load_weights(model: torch.nn.Module, checkpoint: Checkpoint, *, spec: str, trained_from: str,
                 remedy: str = SAME_SPEC) -> None:
    """Load the weights into ``model`` (its own device), refused if damaged, from another spec,
    not of the network's names and shapes, or not finite."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    path = checkpoint.weights
    data = _verified_bytes(checkpoint, path)
    try:
        tensors = load_tensors(data)
        metadata = _metadata(data)
    except (SafetensorError, ValueError) as err:
        raise UsageError(f"cannot read the weights {path.name}: {first_line(err)}", file=str(path)) from None
    _check_spec(metadata.get("archdsl_spec_hash"), spec, path, trained_from, remedy)
    _check_tensors(tensors, model, path)
    with torch.no_grad():
        model.load_state_dict(tensors, strict=False)  # _check_tensors did the strict part, aliases included


def _write_hashed(path: Path, write: Callable[[Path], None]) -> str:
    """Write ``path`` atomically and return the SHA-256 of the bytes that reached the disk (streamed:
    a weights file can be larger than the memory left beside the model)."""
    write_atomic(path, write)
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _verified_bytes(checkpoint: Checkpoint, path: Path) -> bytes:
    """The bytes of ``path``, refused unless their SHA-256 is the one the manifest recorded."""
    try:
        manifest = json.loads(checkpoint.manifest.read_bytes())
        expected = manifest["sha256"][path.name]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"the manifest {checkpoint.manifest.name} is missing or damaged ({first_line(err)})",
                         file=str(checkpoint.manifest)) from None
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {path.name}: {err.strerror or err}", file=str(path)) from None
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise UsageError(
            f"{path.name} has changed since it was written: its SHA-256 is {found[:16]}..., "
            f"the manifest {checkpoint.manifest.name} recorded {str(expected)[:16]}...",
            file=str(path),
            hint="the file is damaged or was replaced; refusing to load it",
        )
    return data


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
