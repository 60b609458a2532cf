"""The options of a training run, checked once, and their JSON form in the run folder.

No torch here: the CLI builds and checks options before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from archdsl.errors import UsageError
from archdsl.runner.augment import Augment

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
DEVICES = ("auto", "cuda", "cpu")
AMP_MODES = ("auto", "bf16", "fp16", "off")
INITS = ("default", "d2l")
KEEPS = ("both", "best", "last")
MONITORS = ("val_acc", "val_loss", "test_acc", "test_loss", "train_acc", "train_loss")
LOGS = ("tensorboard",)
WEIGHTS = ("last", "best")  # which checkpoint eval and predict take
MAX_SEED = 2**64 - 1  # torch.manual_seed takes an unsigned 64-bit seed and overflows above it


@dataclass(frozen=True)
class TrainOptions:
    """Everything that decides what a run computes. Defaults follow the book's ``train_ch6``.

    ``amp="auto"`` means bf16 autocast on CUDA and fp32 on the CPU; ``channels_last=None`` means
    on (NHWC is the faster layout for convolutions on CUDA and on the CPU's oneDNN alike). ``warmup`` is in
    epochs (fractions allowed; ``None``: 30% of the epochs for one-cycle, none otherwise). ``limit`` keeps the
    first N examples of each split, for quick trials. ``out`` is the run folder (default
    ``runs/NETWORK-TIMESTAMP``). ``threads`` is torch's CPU thread count (``None``: chosen at the start, see
    threads.py; run.json records the count used). ``allow_divergence`` trains on past a NaN or infinite loss.

    ``augment`` is ``--augment``'s text (augment.py), kept in its canonical form; ``None``: the data set's
    default. ``val`` holds out that many training examples (an int) or that fraction (a float below 1) for
    validation. ``keep`` says which checkpoints stay (the last, the best by ``monitor``, or both);
    ``monitor`` defaults to val_acc with ``val`` and test_acc without; ``patience`` stops the run after that
    many epochs without an improvement of ``monitor``. ``log`` adds a logger beside metrics.csv
    (tensorboard). ``init_from`` is a run folder whose last weights the network starts from.
    """

    data: str = "fashion-mnist"
    data_dir: str | None = None
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup: float | None = None
    label_smoothing: float = 0.0
    clip_grad: float | None = None
    resize: int | None = None
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    seed: int = 0
    init: str = "default"
    limit: int | None = None
    out: str | None = None
    threads: int | None = None
    allow_divergence: bool = False
    augment: str | None = None
    val: int | float | None = None
    keep: str = "both"
    monitor: str | None = None
    patience: int | None = None
    log: str | None = None
    init_from: str | None = None

    def __post_init__(self) -> None:
        # Every float option, first: inf passes the range checks below (--lr inf), nan passes the `< 0`
        # ones (--weight-decay nan), and either trains to a NaN loss.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"--{field.name.replace('_', '-')} must be a finite number, got {value}")
        _at_least("--epochs", self.epochs, 1)
        _at_least("--batch-size", self.batch_size, 1)
        _positive("--lr", self.lr)
        _choice("--optimizer", self.optimizer, OPTIMIZERS)
        _choice("--schedule", self.schedule, SCHEDULES)
        _choice("--device", self.device, DEVICES)
        _choice("--amp", self.amp, AMP_MODES)
        _choice("--init", self.init, INITS)
        if not 0.0 <= self.momentum < 1.0:
            raise UsageError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0.0:
            raise UsageError(f"--weight-decay must not be negative, got {self.weight_decay}")
        if self.warmup is not None and not 0.0 <= self.warmup <= self.epochs:
            raise UsageError(
                f"--warmup must be between 0 and the number of epochs ({self.epochs}), got {self.warmup}"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UsageError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.clip_grad is not None:
            _positive("--clip-grad", self.clip_grad)
        if self.resize is not None:
            _at_least("--resize", self.resize, 1)
        if self.limit is not None:
            _at_least("--limit", self.limit, 1)
        if self.threads is not None:
            _at_least("--threads", self.threads, 1)
        if not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"--seed must be between 0 and {MAX_SEED}, got {self.seed}")
        if self.augment is not None:
            object.__setattr__(self, "augment", Augment.parse(self.augment).text())  # as run.json records it
        if isinstance(self.val, float) and not 0.0 < self.val < 1.0:
            raise UsageError(f"--val must be a count of examples or a fraction between 0 and 1, got {self.val}")
        if isinstance(self.val, int):
            _at_least("--val", self.val, 1)
        _choice("--keep", self.keep, KEEPS)
        if self.monitor is not None:
            _choice("--monitor", self.monitor, MONITORS)
            if self.monitor.startswith("val_") and self.val is None:
                raise UsageError(f"--monitor {self.monitor} needs a validation split",
                                 hint="hold one out with --val N (a count) or --val 0.1 (a fraction)")
        if self.patience is not None:
            _at_least("--patience", self.patience, 1)
        if self.log is not None:
            _choice("--log", self.log, LOGS)

    @property
    def monitored(self) -> str:
        """The metric that picks the best epoch and that --patience watches."""
        if self.monitor is not None:
            return self.monitor
        return "val_acc" if self.val is not None else "test_acc"

    def replace(self, **changes: Any) -> TrainOptions:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise UsageError(f"{name} must be at least {low}, got {value}")


def _positive(name: str, value: float) -> None:
    if not value > 0.0:
        raise UsageError(f"{name} must be positive, got {value}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
