"""Optimisers and learning-rate schedules.

The schedule is a pure function of the global step, so a checkpoint needs only the step to resume
it exactly (no scheduler object with state of its own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from archdsl.runner.options import TrainOptions

ONECYCLE_WARMUP = 0.3  # of the epochs, when --warmup is not given: the usual one-cycle shape


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


@dataclass(frozen=True)
class Schedule:
    """Linear warm-up to ``base_lr``, then constant, cosine to zero, or (one-cycle) linear to zero."""

    kind: str
    base_lr: float
    total_steps: int
    warmup_steps: int

    @classmethod
    def of(cls, options: TrainOptions, steps_per_epoch: int) -> Schedule:
        warmup = options.warmup
        if warmup is None:
            warmup = ONECYCLE_WARMUP * options.epochs if options.schedule == "onecycle" else 0.0
        total = options.epochs * steps_per_epoch
        return cls(options.schedule, options.lr, total, min(total, round(warmup * steps_per_epoch)))

    def lr(self, step: int) -> float:
        """The learning rate for the 0-based global ``step``."""
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
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
