"""The training loop: ``start`` a run, ``resume`` a killed or finished one, ``evaluate`` a checkpoint.

    net = archdsl.load("specs/lenet.arch")
    result = start(net, TrainOptions(epochs=10, lr=0.9, data_dir="../shared/datasets"))
    result.final.test_acc

Everything the book's ``train_ch6`` does (SGD on cross-entropy, train and test accuracy each
epoch, examples per second) with the data already on the device, no per-batch host sync, the
channels_last layout, and on CUDA bf16 autocast, fused optimisers and optionally torch.compile.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np
import torch
import torch.nn.functional as F

from archdsl.errors import BackendError, UsageError, first_line
from archdsl.runner import checkpoint, datasets, distributed, runfolder
from archdsl.runner import threads as torch_threads
from archdsl.runner.batches import DeviceData
from archdsl.runner.datasets import ImageData, Normalization
from archdsl.runner.distributed import Context
from archdsl.runner.optim import Schedule, build_optimizer, load_optimizer_state
from archdsl.runner.options import TrainOptions
from archdsl.runner.plot import write_curves
from archdsl.runner.progress import Reporter, reporter
from archdsl.runner.runfolder import DataInfo, EpochMetrics, RunInfo, SpecArgs

# For a resume, unlike eval, a new run is the other way out of a checkpoint of another spec.
_SAME_SPEC_OR_RESTART = f"{checkpoint.SAME_SPEC}; or start a new run with --out"
# A NaN or infinite loss is looked for every this many steps (one wait for the device each time) and
# at the end of each epoch; a loss this many times a uniform guess's, ln(classes), gets a warning.
DIVERGENCE_CHECK_STEPS = 50
EXPLODING = 10.0


class Network(Protocol):
    """What the runner needs of ``archdsl.CompiledNetwork``."""

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs: int
    param_values: dict[str, int | float]
    source_path: str | None
    source_text: str
    fingerprint: str

    def build(self, init: str = "default", seed: int | None = None) -> torch.nn.Module: ...

    def require_concrete(self, task: str) -> None: ...


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    history: tuple[EpochMetrics, ...]
    device: str
    world_size: int

    @property
    def final(self) -> EpochMetrics:
        return self.history[-1]


@dataclass(frozen=True)
class EvalResult:
    run_dir: Path
    epoch: int
    test_loss: float
    test_acc: float
    examples: int

    def line(self) -> str:
        return (f"test_loss {self.test_loss:.4f}  test_acc {self.test_acc:.4f}  "
                f"({self.examples} examples, checkpoint of epoch {self.epoch})")


def start(net: Network, options: TrainOptions, *, spec: SpecArgs | None = None,
          stream: TextIO | None = None, report: Reporter | None = None) -> RunResult:
    """Train ``net`` from scratch into a new run folder (``options.out``, or runs/NAME-TIME).

    ``report`` receives the run's progress instead of ``stream``'s bar or lines (a notebook's display,
    archdsl/notebook.py)."""
    spec = spec if spec is not None else SpecArgs(path=net.source_path)
    return _train(net, _absolute(options), spec, None, stream, report)


def resume(net: Network, run_dir: Path, *, epochs: int | None = None, device: str | None = None,
           data_dir: str | None = None, threads: int | None = None, allow_divergence: bool | None = None,
           stream: TextIO | None = None, report: Reporter | None = None) -> RunResult:
    """Continue the run in ``run_dir`` from its last finished epoch, with the options it was started with.

    Only ``epochs`` (to train further), ``device``, ``data_dir``, ``threads`` and ``allow_divergence`` may change.
    """
    info = runfolder.read(Path(run_dir))
    changes = {"epochs": epochs, "device": device, "data_dir": data_dir, "threads": threads,
               "allow_divergence": allow_divergence}
    _check_recorded_data(info, changes)
    options = info.options.replace(**{key: value for key, value in changes.items() if value is not None})
    return _train(net, _absolute(options), info.spec, info, stream, report)


def read_run(run_dir: Path) -> RunInfo:
    """run.json of a run folder: what a resume needs to load the same network again."""
    return runfolder.read(Path(run_dir))


def evaluate(net: Network, run_dir: Path, *, device: str | None = None, data_dir: str | None = None,
             data: str | None = None, threads: int | None = None) -> EvalResult:
    """Test loss and accuracy of the last checkpoint in ``run_dir``, on the run's test data (with the run's
    thread count unless ``threads``)."""
    net.require_concrete("evaluating")
    info = runfolder.read(Path(run_dir))
    changes = {"device": device, "data_dir": data_dir, "data": data, "threads": threads}
    _check_recorded_data(info, changes)
    options = info.options.replace(**{key: value for key, value in changes.items() if value is not None})
    latest = checkpoint.latest(info.folder)
    if latest is None:
        raise UsageError(f"{info.folder} has no checkpoint yet: no epoch of the run has finished",
                         file=str(info.folder))
    context = distributed.setup(options.device)
    thread_count = options.threads or torch_threads.default_choice(None, _local_processes(context)).count
    try:
        with torch_threads.using(thread_count):
            model = _build(net, options, context)
            checkpoint.load_weights(model, latest, spec=checkpoint.spec_hash(net), trained_from=info.trained_from())
            image_data = _load_data(net, options)
            device_data = _device_data(image_data, options, context, net, info.normalization)
            loss, correct, count = _evaluate(model, device_data, options, context)
    finally:
        distributed.teardown(context)
    return EvalResult(info.folder, latest.epoch, loss / max(count, 1), correct / max(count, 1), count)


def _absolute(options: TrainOptions) -> TrainOptions:
    """--data-dir and a --data path made absolute, as run.json records them: a resume or an eval from
    another folder reads the same data."""
    data = options.data if options.data in datasets.KNOWN_SETS else os.path.abspath(options.data)
    data_dir = os.path.abspath(options.data_dir) if options.data_dir is not None else None
    return options.replace(data=data, data_dir=data_dir)


def _check_recorded_data(info: RunInfo, given: dict[str, Any]) -> None:
    """The data folder or file that run.json names, unless the command names another, must still exist:
    otherwise the error says that it came from run.json, since the user did not type it."""
    recorded = info.options
    where = str(info.folder / runfolder.RUN_JSON)
    if given.get("data_dir") is None and recorded.data_dir is not None and not Path(recorded.data_dir).is_dir():
        raise UsageError(f"the run's data folder {os.path.abspath(recorded.data_dir)} (its --data-dir, recorded in "
                         f"{runfolder.RUN_JSON}) is not there", file=where,
                         hint="pass --data-dir with the folder that holds the run's data now")
    if given.get("data") is None and recorded.data not in datasets.KNOWN_SETS and not Path(recorded.data).exists():
        can_move = "data" in given  # eval reads other data; a resume trains on the run's own
        raise UsageError(f"the run's data {os.path.abspath(recorded.data)} (its --data, recorded in "
                         f"{runfolder.RUN_JSON}) is not there", file=where,
                         hint="pass --data with where it is now" if can_move else
                         "put it back there: a resume trains on the data the run began with")


def _train(net: Network, options: TrainOptions, spec: SpecArgs, info: RunInfo | None,
           stream: TextIO | None, report: Reporter | None) -> RunResult:
    net.require_concrete("training")
    context = distributed.setup(options.device)
    try:
        return _Trainer(net, options, spec, info, context, stream, report).run()
    finally:
        distributed.teardown(context)


class _Trainer:
    def __init__(self, net: Network, options: TrainOptions, spec: SpecArgs, info: RunInfo | None,
                 context: Context, stream: TextIO | None, report: Reporter | None) -> None:
        if options.batch_size % context.world_size:
            raise UsageError(f"--batch-size {options.batch_size} does not divide among "
                             f"{context.world_size} processes", hint="--batch-size is the global batch")
        self.net, self.options, self.spec, self.info, self.context = net, options, spec, info, context
        self.run_dir = info.folder if info else Path(options.out or runfolder.default_folder(net.name))
        self.spec_hash = checkpoint.spec_hash(net)
        self.amp = _autocast_dtype(options, context)
        if context.is_cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        self.stream = stream
        self.report = report

    def run(self) -> RunResult:
        context, run_dir = self.context, self.run_dir
        # Everything that can refuse the run (folder, data, checkpoint) comes before anything is written.
        # The process that writes the folder holds its lock from before it reads the checkpoint it goes
        # on from until after the last one it writes.
        with contextlib.ExitStack() as held:
            if context.is_main and self.info is not None:
                held.enter_context(runfolder.claim(run_dir))
            elif context.is_main:
                runfolder.check_new(run_dir)
            sampler = torch_threads.Sampler() if self.options.threads is None else None  # others' load meanwhile
            image_data = _load_data(self.net, self.options)
            if self.info is not None:
                _check_same_data(self.info, image_data)
            threads = self._threads(sampler)
            held.enter_context(torch_threads.using(threads.count))
            options = self.options = self.options.replace(threads=threads.count)  # as run.json records it
            model = _build(self.net, options, context)
            optimizer = build_optimizer(model, options, context.device)
            scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
            resumed = self._restore(model, optimizer, scaler, len(image_data.train_labels))
            normalization = self.info.normalization if self.info else Normalization.of(image_data.train_images)
            if self.info is None and context.is_main:
                held.enter_context(runfolder.claim_new(run_dir))
                runfolder.create(run_dir, self.net.source_text, self._record(image_data, normalization))
            data = _device_data(image_data, options, context, self.net, normalization)
            header = (f"{self.net.name} on {image_data.name} ({len(image_data.train_labels):,} training and "
                      f"{len(image_data.test_labels):,} test images): {self._where()}, {threads.describe()}; "
                      f"run folder {run_dir}")
            return self._epochs(run_dir, model, optimizer, scaler, resumed, data, image_data.name, header)

    def _threads(self, sampler: torch_threads.Sampler | None) -> torch_threads.Choice:
        """--threads; or on a resume the run's own count; or the free cores (threads.py)."""
        count = self.options.threads
        if count is None:
            return torch_threads.default_choice(sampler, _local_processes(self.context))
        if self.info is not None and count == self.info.options.threads:
            return torch_threads.Choice(count, f"the run's, from {runfolder.RUN_JSON}")
        return torch_threads.Choice(count, "--threads")

    def _where(self) -> str:
        context = self.context
        if context.distributed:
            return f"{context.world_size} processes on {context.device.type}"
        return str(context.device)

    def _epochs(self, run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler | None, resumed: checkpoint.TrainingState | None,
                data: DeviceData, data_name: str, header: str) -> RunResult:
        options, context = self.options, self.context
        forward = _wrap(model, options, context)
        steps = data.steps_per_epoch(options.batch_size, context.world_size)
        schedule = Schedule.of(options, steps)
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=options.label_smoothing)
        history = list(resumed.history) if resumed else []
        step, first_epoch = (resumed.step, resumed.epoch + 1) if resumed else (0, 1)

        report = self.report or reporter(options.epochs, main=context.is_main, stream=self.stream)
        report.message(header)
        if resumed is not None:
            report.message(f"resuming {run_dir} after epoch {first_epoch - 1}")
        warned = False
        try:
            for epoch in range(first_epoch, options.epochs + 1):
                began = time.perf_counter()
                with _compile_errors(options.compile):
                    train_loss, train_acc, examples, train_seconds, lr, step = self._train_epoch(
                        epoch, step, forward, optimizer, scaler, schedule, criterion, data, report)
                test_loss, test_correct, test_count = _evaluate(model, data, options, context)
                row = EpochMetrics(
                    epoch=epoch, train_loss=train_loss, train_acc=train_acc,
                    test_loss=test_loss / max(test_count, 1), test_acc=test_correct / max(test_count, 1),
                    examples_per_s=examples / max(train_seconds, 1e-9),
                    seconds=time.perf_counter() - began, lr=lr,
                )
                history.append(row)
                if context.is_main:
                    # The checkpoint last: once it exists, a resume never redoes this epoch, so
                    # metrics.csv and the curves must already show it (a kill before it redoes the
                    # epoch and rewrites both from the same history).
                    runfolder.write_metrics(run_dir, history)
                    write_curves(run_dir, history, f"{self.net.name} on {data_name}")
                    state = {"epoch": epoch, "step": step, "optimizer": optimizer.state_dict(),
                             "scaler": scaler.state_dict() if scaler is not None else {},
                             "history": [asdict(r) for r in history]}
                    checkpoint.save(run_dir, model, state, spec=self.spec_hash, network=self.net.name)
                report.end_epoch(row)
                if not warned and self._diverging(train_loss):
                    warned = True
                    report.message(self._divergence_warning(epoch, train_loss))
            final = history[-1]
            report.message(f"loss {final.train_loss:.3f}, train acc {final.train_acc:.3f}, "
                           f"test acc {final.test_acc:.3f}")
            report.message(f"{final.examples_per_s:.1f} examples/sec on {context.device}; run folder {run_dir}")
        finally:
            report.close()
        distributed.barrier(context)
        return RunResult(run_dir, tuple(history), str(context.device), context.world_size)

    def _restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler | None, train_examples: int) -> checkpoint.TrainingState | None:
        """Load a resumed run's last checkpoint into the model and the optimiser and return its state;
        None when there is nothing to go on from (a new run, or one killed in its first epoch)."""
        if self.info is None:
            return None
        latest = checkpoint.latest(self.info.folder)
        if latest is None:
            return None  # killed during the first epoch: start over in the same folder
        origin = {"spec": self.spec_hash, "trained_from": self.info.trained_from(), "remedy": _SAME_SPEC_OR_RESTART}
        state = checkpoint.load_state(latest, model, **origin)
        if state.epoch >= self.options.epochs:
            raise UsageError(
                f"the run in {self.info.folder} has finished all {state.epoch} epochs",
                file=str(self.info.folder),
                hint=f"pass --epochs N with N > {state.epoch} to train it further",
            )
        # The learning rate is a function of the step: one beyond the run's epochs would schedule
        # rates the run never had (one-cycle's turn negative).
        longest = state.epoch * math.ceil(train_examples / self.options.batch_size)
        if state.step > longest:
            raise checkpoint.damaged(latest.state, f"it is at step {state.step}, but {state.epoch} epochs of "
                                                   f"this run take at most {longest}")
        runfolder.check_metrics(self.info.folder, list(state.history), latest.state)
        checkpoint.load_weights(model, latest, **origin)
        load_optimizer_state(optimizer, self.options, state.optimizer, latest.state)
        if scaler is not None and state.scaler:
            scaler.load_state_dict(state.scaler)
        return state

    def _train_epoch(self, epoch, step, forward, optimizer, scaler, schedule, criterion,
                     data: DeviceData, report: Reporter) -> tuple[float, float, int, float, float, int]:
        options, context = self.options, self.context
        device = context.device
        forward.train()
        # Dropout and other random layers draw from the global generator: seed it per epoch and rank.
        torch.manual_seed(_derived_seed(options.seed, epoch, "layers", context.rank))
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen, lr = 0, options.lr

        def running() -> tuple[float, float]:
            return loss_sum.item() / seen, correct.item() / seen

        report.start_epoch(epoch, data.steps_per_epoch(options.batch_size, context.world_size))
        started = time.perf_counter()
        batches = data.train_batches(_derived_seed(options.seed, epoch, "order"), options.batch_size,
                                     context.rank, context.world_size)
        for done, (images, labels) in enumerate(batches, start=1):
            lr = schedule.apply(optimizer, step)
            step += 1
            x = data.preprocess(images)
            with _autocast(device, self.amp):
                logits = forward(x)
                loss = criterion(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if options.clip_grad is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(forward.parameters(), options.clip_grad)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if options.clip_grad is not None:
                    torch.nn.utils.clip_grad_norm_(forward.parameters(), options.clip_grad)
                optimizer.step()
            with torch.no_grad():
                loss_sum += loss.detach().float() * len(labels)
                correct += (logits.argmax(dim=1) == labels).sum()
            seen += len(labels)
            report.step(done, seen * context.world_size, running)
            if not options.allow_divergence and done % DIVERGENCE_CHECK_STEPS == 0:
                self._stop_if_diverged(loss_sum, epoch, step)
        totals = torch.stack([loss_sum.double(), correct.double(),
                              torch.tensor(float(seen), dtype=torch.float64, device=device)])
        loss_total, correct_total, count = distributed.all_sum(context, totals).tolist()  # waits for the device
        if not options.allow_divergence and not math.isfinite(loss_total):
            raise self._diverged(epoch, step, loss_total)
        seconds = time.perf_counter() - started
        count = max(count, 1.0)
        return loss_total / count, correct_total / count, int(count), seconds, lr, step

    def _stop_if_diverged(self, loss_sum: torch.Tensor, epoch: int, step: int) -> None:
        """Stop once the running loss is NaN or infinite on any process (all of them stop at the same step)."""
        flag = (~torch.isfinite(loss_sum)).to(torch.float64).reshape(1)
        if distributed.all_sum(self.context, flag).item():
            raise self._diverged(epoch, step, loss_sum.item())

    def _diverged(self, epoch: int, step: int, loss: float) -> UsageError:
        """The error that ends a diverged run: its folder keeps the last finished epoch, as after a kill."""
        value = "NaN" if math.isnan(loss) else "infinite" if math.isinf(loss) else "NaN or infinite"
        kept = (f"{self.run_dir} keeps epoch {epoch - 1}" if epoch > 1
                else f"no epoch of {self.run_dir} finished")
        resume = f"archdsl train {self.spec.path or 'SPEC'} --resume {self.run_dir} --allow-divergence"
        return UsageError(
            f"the training loss became {value} in epoch {epoch} (by step {step}): the run diverged and stopped",
            hint=f"{kept}; a lower --lr (or --warmup, --clip-grad) usually helps, in a new run; "
                 f"to train on regardless: {resume}",
        )

    def _diverging(self, train_loss: float) -> bool:
        return not math.isfinite(train_loss) or train_loss > EXPLODING * self._chance_loss()

    def _chance_loss(self) -> float:
        """The cross-entropy of a uniform guess over the classes."""
        return math.log(max(self.net.output_shape[0], 2))

    def _divergence_warning(self, epoch: int, train_loss: float) -> str:
        if not math.isfinite(train_loss):  # only with --allow-divergence: the run stops there otherwise
            return (f"warning: the training loss of epoch {epoch} is {train_loss}: the run has diverged, and trains on "
                    "as --allow-divergence asks (its weights stay NaN once they are)")
        return (f"warning: the training loss of epoch {epoch} is {train_loss:,.6g}, more than {EXPLODING:g} times "
                f"a uniform guess's ({self._chance_loss():.2f}): the run may be diverging; a lower --lr may help")

    def _record(self, data: ImageData, normalization: Normalization) -> dict[str, Any]:
        net, context = self.net, self.context
        return {
            "network": net.name,
            "spec": runfolder.spec_record(self.spec),
            "spec_hash": self.spec_hash,
            "param_values": net.param_values,
            "input_shape": list(net.input_shape),
            "output_shape": list(net.output_shape),
            "params": net.params,
            "macs": net.macs,
            "options": self.options.to_json(),
            "normalization": normalization.to_json(),
            "data": {
                "name": data.name,
                "source": data.source,
                "train_examples": len(data.train_labels),
                "test_examples": len(data.test_labels),
                "image_shape": list(data.image_shape),
                "classes": list(data.classes),
                "sha256": data_sha256(data),
            },
            "environment": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "device": str(context.device),
                "device_name": torch.cuda.get_device_name(context.device) if context.is_cuda else platform.processor(),
                "world_size": context.world_size,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        }


def _evaluate(model: torch.nn.Module, data: DeviceData, options: TrainOptions,
              context: Context) -> tuple[float, float, int]:
    """Summed test loss (plain cross-entropy), correct count and count over all ranks."""
    amp = _autocast_dtype(options, context)
    model.eval()
    loss_sum = torch.zeros((), device=context.device, dtype=torch.float64)
    correct = torch.zeros((), device=context.device, dtype=torch.float64)
    count = 0
    with torch.no_grad():
        for images, labels in data.test_batches(options.batch_size, context.rank, context.world_size):
            with _autocast(context.device, amp):
                logits = model(data.preprocess(images))
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").double()
            correct += (logits.argmax(dim=1) == labels).sum().double()
            count += len(labels)
    totals = torch.stack([loss_sum, correct, torch.tensor(float(count), dtype=torch.float64, device=context.device)])
    loss_total, correct_total, count_total = distributed.all_sum(context, totals).tolist()
    return loss_total, correct_total, int(count_total)


def _load_data(net: Network, options: TrainOptions) -> ImageData:
    _check_classifier(net)
    data = datasets.load(options.data, options.data_dir, channels=net.input_shape[0]).limited(options.limit)
    check_contract(net, data, options.resize)
    return data


def data_sha256(data: ImageData) -> str:
    """The SHA-256 of the images and labels as a run trains on them (both splits, after --limit), with
    their types and shapes: the same for the .gz files and for their unpacked copies."""
    digest = hashlib.sha256()
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _check_same_data(info: RunInfo, data: ImageData) -> None:
    """A resume trains on the data the run began with: --data-dir may point at another copy now."""
    recorded = info.data
    found = DataInfo(len(data.train_labels), len(data.test_labels), data.image_shape, data.classes,
                     data_sha256(data) if recorded.sha256 is not None else None)  # runs before the checksum had none
    if found == recorded:
        return
    differences = [f"{field.name} {_brief(getattr(recorded, field.name))} in {runfolder.RUN_JSON}, "
                   f"{_brief(getattr(found, field.name))} now"
                   for field in fields(DataInfo)
                   if field.name != "sha256" and getattr(recorded, field.name) != getattr(found, field.name)]
    differences = differences or [f"the images or labels differ from those whose SHA-256 {runfolder.RUN_JSON} records"]
    raise UsageError(f"{data.name} from {data.source} is not the data this run was trained on: "
                     + "; ".join(differences),
                     file=str(info.folder / runfolder.RUN_JSON),
                     hint="pass the --data-dir that holds the run's data, or start a new run on this data")


def _brief(value: object) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        return f"{len(value)} names"
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _device_data(data: ImageData, options: TrainOptions, context: Context, net: Network,
                 normalization: Normalization) -> DeviceData:
    return DeviceData(data, context.device, size=(net.input_shape[1], net.input_shape[2]),
                      normalization=normalization, channels_last=_channels_last(options))


def _check_classifier(net: Network) -> None:
    if len(net.input_shape) != 3:
        raise UsageError(
            f"network '{net.name}' takes input {_shape(net.input_shape)}; training needs images, C x H x W",
            file=net.source_path)
    if len(net.output_shape) != 1:
        raise UsageError(
            f"network '{net.name}' outputs {_shape(net.output_shape)}; training needs one score per class",
            file=net.source_path, hint="end the network with a linear layer to the number of classes")


def check_contract(net: Network, data: ImageData, resize: int | None) -> None:
    """The network's declared input is the contract: the data (resized or not) must match it."""
    channels, height, width = net.input_shape
    data_channels, data_height, data_width = data.image_shape
    expects = f"network '{net.name}' expects {channels}x{height}x{width} images"
    if data_channels != channels:
        raise UsageError(
            f"the {expects}, but {data.name} has {data_channels}-channel images ({_shape(data.image_shape)})",
            file=net.source_path,
            hint=f"declare the network's input with {data_channels} channel(s), or use data with {channels}",
        )
    if resize is not None and (resize, resize) != (height, width):
        raise UsageError(
            f"--resize {resize} makes {data_channels}x{resize}x{resize} images, but the {expects}",
            file=net.source_path,
            hint=f"pass --resize {height}" if height == width else "declare a square input to use --resize",
        )
    if resize is None and (data_height, data_width) != (height, width):
        raise UsageError(
            f"the {expects}, but {data.name}'s images are {_shape(data.image_shape)}",
            file=net.source_path,
            hint=(f"pass --resize {height} to resize them on the device" if height == width
                  else f"declare the input as [{data_channels}, {data_height}, {data_width}]"),
        )
    # Too few scores cannot learn every class; too many leave scores that no label trains but argmax still picks.
    classes, wanted = net.output_shape[0], len(data.classes)
    if wanted != classes:
        raise UsageError(
            f"{data.name} has {wanted} classes, but network '{net.name}' outputs {classes} scores",
            file=net.source_path,
            hint=(f"pass --param classes={wanted}" if "classes" in net.param_values
                  else f"make the last layer output {wanted} scores"),
        )


def _build(net: Network, options: TrainOptions, context: Context) -> torch.nn.Module:
    model = net.build(init=options.init, seed=options.seed)
    memory_format = torch.channels_last if _channels_last(options) else torch.preserve_format
    return model.to(context.device, memory_format=memory_format)


def _wrap(model: torch.nn.Module, options: TrainOptions, context: Context) -> torch.nn.Module:
    """DistributedDataParallel under torchrun, then torch.compile when asked for."""
    forward = model
    if context.distributed:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [context.device.index] if context.is_cuda else None
        forward = DistributedDataParallel(model, device_ids=device_ids)
    if options.compile:
        forward = torch.compile(forward)
    return forward


def _local_processes(context: Context) -> int:
    """torchrun's processes on this machine, which share its cores."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if context.distributed else 1


def _channels_last(options: TrainOptions) -> bool:
    # On by default everywhere: on this project's 2-core CPU a training step in NHWC was 1.06x (ResNet-18)
    # to 1.34x (LeNet) as fast as in the default layout (benchmarks/bench_train.py --layouts).
    return options.channels_last is not False


def _autocast_dtype(options: TrainOptions, context: Context) -> torch.dtype | None:
    """bf16 by default on CUDA; fp32 by default on the CPU, where bf16 autocast is opt-in.

    On a CPU with AMX or AVX512-BF16 (oneDNN uses them), ``--amp bf16`` made a VGG-11/8 training step
    1.3x as fast on this project's machine; on CPUs without them it is slower than fp32, hence opt-in.
    """
    if options.amp == "fp16" and not context.is_cuda:
        raise UsageError("--amp fp16 needs a CUDA device; on the CPU autocast takes bf16",
                         hint="pass --amp bf16, or drop --amp to train in fp32")
    if options.amp == "off" or (options.amp == "auto" and not context.is_cuda):
        return None
    return torch.float16 if options.amp == "fp16" else torch.bfloat16


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def _compile_errors(enabled: bool) -> Iterator[None]:
    """torch.compile fails at the first call, deep inside dynamo or inductor: say so in one line."""
    try:
        yield
    except Exception as err:
        if enabled and type(err).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise BackendError(f"torch.compile failed: {first_line(err)}", hint="run without --compile") from None
        raise


def _derived_seed(seed: int, epoch: int, stream: str, rank: int = 0) -> int:
    """A 63-bit seed for one random stream of one epoch, independent of the others."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{stream}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(dim) for dim in shape)
