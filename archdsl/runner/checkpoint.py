"""Checkpoints, one per finished epoch, each safe to resume from whenever the run is killed.

    RUN/checkpoints/epoch-0003.safetensors  the weights; metadata: spec hash, network, epoch
    RUN/checkpoints/epoch-0003.state.pt     optimiser and grad-scaler state, global step, epoch,
                                            the metrics so far (torch.load(weights_only=True))

Both files are written atomically, the weights first: a checkpoint exists once its state file
does, so a kill at any moment leaves the last complete one intact. Older ones are pruned after.

No RNG state is saved, on purpose: every random draw of epoch e (the data order, dropout) comes
from generators seeded with (seed, epoch), so a resumed run draws exactly what an uninterrupted
one would, on any number of processes.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from archdsl.errors import UsageError
from archdsl.runner.atomic import fsync_folder, write_atomic

FOLDER = "checkpoints"
STATE_PATTERN = re.compile(r"epoch-(\d+)\.state\.pt")


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


def latest(run_dir: Path) -> Checkpoint | None:
    """The newest complete checkpoint of a run, or None when no epoch has finished."""
    folder = run_dir / FOLDER
    if not folder.is_dir():
        return None
    epochs = sorted(
        (int(match.group(1)) for p in folder.iterdir() if (match := STATE_PATTERN.fullmatch(p.name))),
        reverse=True,
    )
    for epoch in epochs:
        found = _paths(run_dir, epoch)
        if found.weights.is_file():
            return found
    return None


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
    write_atomic(target.weights, lambda tmp: save_model(model, str(tmp), metadata=metadata))
    write_atomic(target.state, lambda tmp: torch.save({**state, "spec_hash": spec}, tmp))
    for stale in folder.iterdir():
        if stale.name.startswith("epoch-") and stale not in (target.weights, target.state):
            stale.unlink(missing_ok=True)
    fsync_folder(folder)
    return target


def load_state(checkpoint: Checkpoint, *, spec: str, trained_from: str) -> dict[str, Any]:
    """The training state, refused if it belongs to another spec. Never unpickles arbitrary objects."""
    try:
        state = torch.load(checkpoint.state, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise UsageError(f"cannot read the checkpoint {checkpoint.state.name}: {err}",
                         file=str(checkpoint.state)) from None
    if not isinstance(state, dict) or "spec_hash" not in state:
        raise UsageError(f"{checkpoint.state.name} is not an archdsl checkpoint", file=str(checkpoint.state))
    _check_spec(state["spec_hash"], spec, checkpoint.state, trained_from)
    return state


def load_weights(model: torch.nn.Module, checkpoint: Checkpoint, *, spec: str, trained_from: str) -> None:
    """Load the weights into ``model`` (its own device), refused if they belong to another spec."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model

    try:
        with safe_open(str(checkpoint.weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise UsageError(f"cannot read the weights {checkpoint.weights.name}: {err}",
                         file=str(checkpoint.weights)) from None
    _check_spec(metadata.get("archdsl_spec_hash"), spec, checkpoint.weights, trained_from)
    device = next(model.parameters()).device
    try:
        load_model(model, str(checkpoint.weights), strict=True, device=str(device))
    except (RuntimeError, SafetensorError) as err:
        raise UsageError(f"the weights in {checkpoint.weights.name} do not fit the network: {err}",
                         file=str(checkpoint.weights)) from None


def _check_spec(found: str | None, expected: str, path: Path, trained_from: str) -> None:
    if found != expected:
        raise UsageError(
            "this checkpoint was trained from a different spec (or different --param values)",
            file=str(path),
            hint=f"{trained_from}; use that, or start a new run with --out",
        )


def _paths(run_dir: Path, epoch: int) -> Checkpoint:
    folder = run_dir / FOLDER
    return Checkpoint(epoch, folder / f"epoch-{epoch:04d}.safetensors", folder / f"epoch-{epoch:04d}.state.pt")
