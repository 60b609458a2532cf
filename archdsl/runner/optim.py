"""Optimisers and learning-rate schedules.

The schedule is a pure function of the global step, so a checkpoint needs only the step to resume
it exactly (no scheduler object with state of its own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from archdsl.runner.checkpoint import damaged
from archdsl.runner.options import TrainOptions
from archdsl.runner.runfolder import ScheduleChange

ONECYCLE_WARMUP = 0.3  # of the epochs, when --warmup is not given: the usual one-cycle shape
# What each optimiser keeps per parameter, as its state_dict() has it: "step" a scalar, the others of
# the parameter's shape (SGD without momentum keeps nothing).
STATE_KEYS = {
    "sgd": {"momentum_buffer"},
    "adam": {"step", "exp_avg", "exp_avg_sq"},
    "adamw": {"step", "exp_avg", "exp_avg_sq"},
}


def build_optimizer(model: torch.nn.Module, options: TrainOptions, device: torch.device) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay), Adam or AdamW; fused kernels on CUDA, the plain ones on the CPU."""
    params = [p for p in model.parameters() if p.requires_grad]
    fast = {"fused": True} if device.type == "cuda" else {}
    if options.optimizer == "sgd":
        return torch.optim.SGD(params, lr=options.lr, momentum=options.momentum,
                               weight_decay=options.weight_decay, **fast)
    if options.optimizer == "adam":
        return torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay, **fast)
    if options.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay, **fast)
    raise AssertionError(f"unhandled optimizer {options.optimizer!r}")


def load_optimizer_state(optimizer: torch.optim.Optimizer, options: TrainOptions, saved: dict[str, Any],
                         path: Path) -> None:
    """Load a checkpoint's per-parameter optimiser state into ``optimizer``, refused unless it is the
    state of that optimiser for these parameters: the same parameter groups, the entries that
    ``options.optimizer`` keeps, tensors of the parameters' shapes, finite values.

    The hyperparameters (momentum, weight decay, betas) stay the optimiser's own, which come from
    run.json's options: a checkpoint's copy of them is not trusted.
    """
    own = optimizer.state_dict()
    if [group["params"] for group in saved["param_groups"]] != [group["params"] for group in own["param_groups"]]:
        raise damaged(path, "its optimizer state is for other parameters than the network's")
    params = [param for group in optimizer.param_groups for param in group["params"]]
    for index, entries in saved["state"].items():
        if index >= len(params):
            raise damaged(path, f"its optimizer state names parameter {index}; the network has {len(params)}")
        if set(entries) != STATE_KEYS[options.optimizer]:
            raise damaged(path, f"its optimizer state holds {', '.join(sorted(entries)) or 'nothing'} for a "
                                f"parameter; {options.optimizer} keeps {', '.join(sorted(STATE_KEYS[options.optimizer]))}")
        for name, value in entries.items():
            _check_entry(name, value, params[index], path)
    optimizer.load_state_dict({"state": saved["state"], "param_groups": own["param_groups"]})


def _check_entry(name: str, value: torch.Tensor, param: torch.Tensor, path: Path) -> None:
    shape = () if name == "step" else tuple(param.shape)
    if not value.is_floating_point() or tuple(value.shape) != shape:
        raise damaged(path, f"its optimizer's {name} is {value.dtype} of shape {list(value.shape)}; "
                            f"a float tensor of shape {list(shape)} was expected")
    if not bool(torch.isfinite(value).all()) or (name == "step" and value.item() < 0):
        raise damaged(path, f"its optimizer's {name} holds a negative, NaN or infinite value")


@dataclass(frozen=True)
class Schedule:
    """Linear warm-up to ``base_lr``, then constant, cosine to zero, or (one-cycle) linear to zero, over the
    steps from ``start`` to ``total_steps``; before ``start``, the ``previous`` schedule's rates (a resume
    with --reschedule starts a new schedule where the run stands, and run.json records each)."""

    kind: str
    base_lr: float
    total_steps: int
    warmup_steps: int
    start: int = 0
    previous: Schedule | None = None

    @classmethod
    def of(cls, options: TrainOptions, steps_per_epoch: int, changes: tuple[ScheduleChange, ...] = ()) -> Schedule:
        total = options.epochs * steps_per_epoch
        schedule = cls(options.schedule, options.lr, total,
                       _warmup_steps(options.warmup, options.schedule, options.epochs, steps_per_epoch, total))
        for change in changes:
            left = total - change.step
            epochs_left = max(options.epochs - (change.epoch - 1), 0)
            warmup = _warmup_steps(change.warmup, change.schedule, epochs_left, steps_per_epoch, left)
            schedule = cls(change.schedule, change.lr, total, warmup, change.step, schedule)
        return schedule

    def lr(self, step: int) -> float:
        """The learning rate for the 0-based global ``step``."""
        if step < self.start and self.previous is not None:
            return self.previous.lr(step)
        local = step - self.start
        if local < self.warmup_steps:
            return self.base_lr * (local + 1) / self.warmup_steps
        progress = (local - self.warmup_steps) / max(1, self.total_steps - self.start - self.warmup_steps)
        if self.kind == "constant":
            return self.base_lr
        if self.kind == "cosine":
            return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.kind == "onecycle":
            return self.base_lr * (1.0 - progress)
        raise AssertionError(f"unhandled schedule {self.kind!r}")

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        lr = self.lr(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr


def _warmup_steps(warmup: float | None, kind: str, epochs: int, steps_per_epoch: int, steps: int) -> int:
    """--warmup in steps (default: 30% of the epochs for one-cycle, none otherwise), at most ``steps``."""
    if warmup is None:
        warmup = ONECYCLE_WARMUP * epochs if kind == "onecycle" else 0.0
    return max(0, min(steps, round(warmup * steps_per_epoch)))
