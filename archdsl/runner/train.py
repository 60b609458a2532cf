"""The training loop: ``start`` a run, ``resume`` a killed or finished one (``evaluate`` and ``predict``, in
evaluation.py, read its checkpoints).

    net = archdsl.load("specs/lenet.arch")
    result = start(net, TrainOptions(epochs=10, lr=0.9, data_dir="../shared/datasets"))
    result.final.test_acc

Everything the book's ``train_ch6`` does (SGD on cross-entropy, train and test accuracy each
epoch, examples per second) with the data already on the device, no per-batch host sync, the
channels_last layout, and on CUDA bf16 autocast, fused optimisers and optionally torch.compile;
besides, augmentation on the device, a validation split, the best checkpoint and early stopping.
"""

from __future__ import annotations

import contextlib
import math
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from archdsl.errors import BackendError, UsageError, first_line
from archdsl.runner import checkpoint, distributed, runfolder, selection, session
from archdsl.runner import threads as torch_threads
from archdsl.runner.augment import Augment, Augmenter
from archdsl.runner.batches import DeviceData
from archdsl.runner.datasets import ImageData, Normalization
from archdsl.runner.distributed import Context
from archdsl.runner.evaluation import EvalResult, evaluate, measure, predict  # noqa: F401 - the runner's API
from archdsl.runner.loggers import TensorBoard
from archdsl.runner.optim import Schedule, build_optimizer, load_optimizer_state
from archdsl.runner.options import TrainOptions
from archdsl.runner.plot import write_curves
from archdsl.runner.progress import Reporter, reporter
from archdsl.runner.runfolder import EpochMetrics, InitFrom, RunInfo, ScheduleChange, SpecArgs
from archdsl.runner.session import Network, derived_seed

# For a resume, unlike eval, a new run is the other way out of a checkpoint of another spec.
_SAME_SPEC_OR_RESTART = f"{checkpoint.SAME_SPEC}; or start a new run with --out"
# A NaN or infinite loss is looked for every this many steps (one wait for the device each time) and
# at the end of each epoch; a loss this many times a uniform guess's, ln(classes), gets a warning.
DIVERGENCE_CHECK_STEPS = 50
EXPLODING = 10.0
# What --reschedule lets a resume change.
RESCHEDULE = ("lr", "schedule", "warmup")


@dataclass(frozen=True)
class RunResult:
    """A finished run: its metrics, the best epoch by its --monitor, and why it stopped early, if it did."""

    run_dir: Path
    history: tuple[EpochMetrics, ...]
    device: str
    world_size: int
    best_epoch: int | None = None
    early_stop: str | None = None

    @property
    def final(self) -> EpochMetrics:
        return self.history[-1]


def start(net: Network, options: TrainOptions, *, spec: SpecArgs | None = None,
          stream: TextIO | None = None, report: Reporter | None = None) -> RunResult:
    """Train ``net`` from scratch into a new run folder (``options.out``, or runs/NAME-TIME).

    ``report`` receives the run's progress instead of ``stream``'s bar or lines (a notebook's display,
    archdsl/notebook.py)."""
    spec = spec if spec is not None else SpecArgs(path=net.source_path)
    return _train(net, session.absolute(options), spec, None, None, stream, report)


def resume(net: Network, run_dir: Path, *, epochs: int | None = None, device: str | None = None,
           data_dir: str | None = None, threads: int | None = None, allow_divergence: bool | None = None,
           patience: int | None = None, log: str | None = None, lr: float | None = None,
           schedule: str | None = None, warmup: float | None = None, reschedule: bool = False,
           stream: TextIO | None = None, report: Reporter | None = None) -> RunResult:
    """Continue the run in ``run_dir`` from its last finished epoch, with the options it was started with.

    Only ``epochs`` (to train further), ``device``, ``data_dir``, ``threads``, ``allow_divergence``, ``patience``
    and ``log`` may change; with ``reschedule``, ``lr``, ``schedule`` and ``warmup`` too, from the epoch the
    run goes on with (run.json records the change).
    """
    info = runfolder.read(Path(run_dir))
    changes = {"epochs": epochs, "device": device, "data_dir": data_dir, "threads": threads,
               "allow_divergence": allow_divergence, "patience": patience, "log": log}
    session.check_recorded_data(info, changes)
    options = info.options.replace(**{key: value for key, value in changes.items() if value is not None})
    asked = {"lr": lr, "schedule": schedule, "warmup": warmup}
    given = [name for name, value in asked.items() if value is not None]
    if given and not reschedule:
        flags = ", ".join("--" + name for name in given)
        raise UsageError(f"{flags} would change the learning rate of a run that is resumed; that takes --reschedule",
                         hint="add --reschedule to train on with the new schedule from the next epoch (run.json "
                              "records it), or drop " + flags)
    if reschedule and not given:
        raise UsageError("--reschedule needs the new --lr, --schedule or --warmup")
    new_schedule = None
    if reschedule:
        # Checked as options are: TrainOptions refuses a negative --lr or an unknown schedule.
        checked = options.replace(lr=lr if lr is not None else options.lr,
                                  schedule=schedule if schedule is not None else options.schedule, warmup=warmup)
        new_schedule = (checked.lr, checked.schedule, checked.warmup)
    return _train(net, session.absolute(options), info.spec, info, new_schedule, stream, report)


def read_run(run_dir: Path) -> RunInfo:
    """run.json of a run folder: what a resume needs to load the same network again."""
    return runfolder.read(Path(run_dir))


def finished(run_dir: Path) -> bool:
    """Whether a run has nothing left to train at its options: all its epochs done, stopped early by --patience,
    or ended with --keep best (a resume of it would be refused). From its files, without loading a network."""
    info = runfolder.read(Path(run_dir))
    if checkpoint.ended(info.folder) is not None:
        return True
    latest = checkpoint.latest(info.folder)
    if latest is None:
        return False
    if latest.epoch >= info.options.epochs:
        return True
    history = runfolder.read_metrics(info.folder)[:latest.epoch]
    return len(history) == latest.epoch and selection.stopped_early(
        history, info.options.monitored, info.options.patience) is not None


def _train(net: Network, options: TrainOptions, spec: SpecArgs, info: RunInfo | None,
           new_schedule: tuple[float, str, float | None] | None, stream: TextIO | None,
           report: Reporter | None) -> RunResult:
    net.require_concrete("training")
    context = distributed.setup(options.device)
    try:
        return _Trainer(net, options, spec, info, new_schedule, context, stream, report).run()
    finally:
        distributed.teardown(context)


class _Trainer:
    def __init__(self, net: Network, options: TrainOptions, spec: SpecArgs, info: RunInfo | None,
                 new_schedule: tuple[float, str, float | None] | None, context: Context,
                 stream: TextIO | None, report: Reporter | None) -> None:
        if options.batch_size % context.world_size:
            raise UsageError(f"--batch-size {options.batch_size} does not divide among "
                             f"{context.world_size} processes", hint="--batch-size is the global batch")
        self.net, self.options, self.spec, self.info, self.context = net, options, spec, info, context
        self.new_schedule = new_schedule
        self.schedule_changes = info.schedule_changes if info else ()
        self.run_dir = info.folder if info else Path(options.out or runfolder.default_folder(net.name))
        self.spec_hash = checkpoint.spec_hash(net)
        self.amp = session.autocast_dtype(options, context)
        self.augment = Augment.parse(options.augment or "none")
        self.init_from: InitFrom | None = info.init_from if info else None
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
        # on from until after the last one it writes; the other ranks learn whether it could.
        with contextlib.ExitStack() as held:
            if self.info is not None:
                distributed.on_main(context, lambda: held.enter_context(runfolder.claim(run_dir)))
            else:
                distributed.on_main(context, lambda: runfolder.check_new(run_dir))
            sampler = torch_threads.Sampler() if self.options.threads is None else None  # others' load meanwhile
            image_data = session.load_data(self.net, self.options)
            if self.info is not None:
                session.check_same_data(self.info, image_data)
            training = session.split(image_data, self.options)
            self.augment.check_size(*training.image_shape[1:])
            threads = self._threads(sampler)
            held.enter_context(torch_threads.using(threads.count))
            options = self.options = self.options.replace(threads=threads.count)  # as run.json records it
            model = session.build_model(self.net, options, context)
            optimizer = build_optimizer(model, options, context.device)
            scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
            resumed = self._restore(model, optimizer, scaler, len(training.train_labels))
            if resumed is None and options.init_from is not None:
                self._initialise(model)
            normalization = self.info.normalization if self.info else Normalization.of(training.train_images)
            if self.info is None:
                record = self._record(image_data, normalization)
                distributed.on_main(context, lambda: self._create(held, record))
            elif self.new_schedule is not None:
                self._reschedule(resumed)
            data = session.device_data(training, options, context, self.net, normalization)
            header = (f"{self.net.name} on {image_data.name} ({_split_sizes(training)}): {self._where()}, "
                      f"{threads.describe()}; run folder {run_dir}")
            return self._epochs(run_dir, model, optimizer, scaler, resumed, data, image_data.name, header)

    def _create(self, held: contextlib.ExitStack, record: dict[str, Any]) -> None:
        held.enter_context(runfolder.claim_new(self.run_dir))
        runfolder.create(self.run_dir, self.net.source_text, record, runfolder.spec_files(self.net))

    def _threads(self, sampler: torch_threads.Sampler | None) -> torch_threads.Choice:
        """--threads; or on a resume the run's own count; or the free cores (threads.py)."""
        count = self.options.threads
        if count is None:
            return torch_threads.default_choice(sampler, session.local_processes(self.context))
        if self.info is not None and count == self.info.options.threads:
            return torch_threads.Choice(count, f"the run's, from {runfolder.RUN_JSON}")
        return torch_threads.Choice(count, "--threads")

    def _where(self) -> str:
        context = self.context
        if context.distributed:
            return f"{context.world_size} processes on {context.device.type}"
        return str(context.device)

    def _initialise(self, model: torch.nn.Module) -> None:
        """--init-from: the other run's newest weights; for a run that starts over (killed in its first
        epoch), the very weights it first started from, which run.json records."""
        source = Path(self.options.init_from)
        other = runfolder.read(source)
        recorded = self.init_from
        found = checkpoint.at(other.folder, recorded.epoch) if recorded else checkpoint.latest(other.folder)
        if found is None:
            missing = (f"its checkpoint of epoch {recorded.epoch}, which this run started from, is gone" if recorded
                       else "no epoch of it has finished")
            raise UsageError(f"--init-from {source}: {missing}", file=str(source))
        sha256 = checkpoint.load_matching(model, found)
        if recorded is not None and sha256 != recorded.sha256:
            raise UsageError(f"--init-from {source}: the weights of epoch {found.epoch} are not those this run "
                             "started from (their SHA-256 differs from run.json's)", file=str(found.weights))
        self.init_from = InitFrom(str(other.folder.resolve()), found.epoch, sha256)

    def _reschedule(self, resumed: checkpoint.TrainingState | None) -> None:
        """Record --reschedule in run.json (rank 0) and use it from the step where the run goes on."""
        lr, kind, warmup = self.new_schedule
        step, epoch = (resumed.step, resumed.epoch + 1) if resumed else (0, 1)
        change = ScheduleChange(epoch=epoch, step=step, lr=lr, schedule=kind, warmup=warmup)
        self.schedule_changes = (*(c for c in self.schedule_changes if c.step != step), change)
        if self.context.is_main:
            runfolder.record_schedule_change(self.run_dir, change)

    def _epochs(self, run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler | None, resumed: checkpoint.TrainingState | None,
                data: DeviceData, data_name: str, header: str) -> RunResult:
        options, context = self.options, self.context
        forward = _wrap(model, options, context)
        steps = data.steps_per_epoch(options.batch_size, context.world_size)
        schedule = Schedule.of(options, steps, self.schedule_changes)
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=options.label_smoothing)
        history = list(resumed.history) if resumed else []
        step, first_epoch = (resumed.step, resumed.epoch + 1) if resumed else (0, 1)
        metric = options.monitored

        report = self.report or reporter(options.epochs, main=context.is_main, stream=self.stream)
        logger = None
        warned, stop = False, None
        try:
            if resumed is None:
                for warning in final_softmax_warnings(self.net):
                    report.message(warning)
            report.message(header)
            if resumed is not None:
                report.message(f"resuming {run_dir} after epoch {first_epoch - 1}")
            if context.is_main and options.log == "tensorboard":
                logger = self._tensorboard(model, data, first_epoch, report)
            for epoch in range(first_epoch, options.epochs + 1):
                began = time.perf_counter()
                with _compile_errors(options.compile):
                    train_loss, train_acc, examples, train_seconds, lr, step = self._train_epoch(
                        epoch, step, forward, optimizer, scaler, schedule, criterion, data, report)
                batches = (options.batch_size, context.rank, context.world_size)
                test = measure(model, data.test_batches(*batches), data.preprocess, options, context)
                val = (measure(model, data.val_batches(*batches), data.preprocess, options, context)
                       if data.has_validation else None)
                row = EpochMetrics(
                    epoch=epoch, train_loss=train_loss, train_acc=train_acc,
                    test_loss=test.mean_loss, test_acc=test.accuracy,
                    examples_per_s=examples / max(train_seconds, 1e-9),
                    seconds=time.perf_counter() - began, lr=lr,
                    val_loss=val.mean_loss if val else None, val_acc=val.accuracy if val else None,
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
                    keep = () if options.keep == "last" else (selection.best_epoch(history, metric),)
                    checkpoint.save(run_dir, model, state, spec=self.spec_hash, network=self.net.name, keep=keep)
                    if logger is not None:
                        logger.epoch(row)
                report.end_epoch(row)
                if not warned and self._diverging(train_loss):
                    warned = True
                    report.message(self._divergence_warning(epoch, train_loss))
                stop = selection.stopped_early(history, metric, options.patience)
                if stop is not None:
                    report.message(f"early stop after epoch {epoch}: {stop.describe()}")
                    break
            best = selection.best_epoch(history, metric)
            if context.is_main and options.keep == "best":
                checkpoint.end_keeping_best(run_dir, history[-1].epoch, best)
            final = history[-1]
            report.message(f"loss {final.train_loss:.3f}, train acc {final.train_acc:.3f}, "
                           f"test acc {final.test_acc:.3f}")
            if options.keep != "last":
                kept = {"both": "kept with the last", "best": "kept alone"}[options.keep]
                report.message(f"best epoch {best} by {metric} ({history[best - 1].metric(metric):.4f}), {kept}")
            report.message(f"{final.examples_per_s:.1f} examples/sec on {context.device}; run folder {run_dir}")
        finally:
            if logger is not None:
                logger.close()
            report.close()
        distributed.barrier(context)
        return RunResult(run_dir, tuple(history), str(context.device), context.world_size, best,
                         stop.describe() if stop is not None else None)

    def _tensorboard(self, model: torch.nn.Module, data: DeviceData, first_epoch: int,
                     report: Reporter) -> TensorBoard:
        example = data.preprocess(data.test_images[:1])
        logger = TensorBoard(self.run_dir, first_epoch, model, example)
        if logger.graph is not None:
            report.message(f"note: the TensorBoard log has no graph of the model: torch could not trace it "
                           f"({logger.graph})")
        return logger

    def _restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler | None, train_examples: int) -> checkpoint.TrainingState | None:
        """Load a resumed run's last checkpoint into the model and the optimiser and return its state;
        None when there is nothing to go on from (a new run, or one killed in its first epoch)."""
        if self.info is None:
            return None
        folder = self.info.folder
        ended = checkpoint.ended(folder)
        if ended is not None:
            raise UsageError(
                f"the run in {folder} ended after epoch {ended.epoch} with --keep best, which kept only the "
                f"checkpoint of its best epoch ({ended.best}); training further needs the last epoch's",
                file=str(folder), hint=f"start a new run from its weights: --init-from {folder}")
        latest = checkpoint.latest(folder)
        if latest is None:
            return None  # killed during the first epoch: start over in the same folder
        origin = {"spec": self.spec_hash, "trained_from": self.info.trained_from(), "remedy": _SAME_SPEC_OR_RESTART}
        state = checkpoint.load_state(latest, model, **origin)
        if state.epoch >= self.options.epochs:
            raise UsageError(
                f"the run in {folder} has finished all {state.epoch} epochs",
                file=str(folder),
                hint=f"pass --epochs N with N > {state.epoch} to train it further",
            )
        stop = selection.stopped_early(state.history, self.options.monitored, self.options.patience)
        if stop is not None:
            raise UsageError(f"the run in {folder} stopped early after epoch {state.epoch}: {stop.describe()}",
                             file=str(folder),
                             hint=f"pass --patience N with N > {stop.patience} to train it further")
        # The learning rate is a function of the step: one beyond the run's epochs would schedule
        # rates the run never had (one-cycle's turn negative).
        longest = state.epoch * math.ceil(train_examples / self.options.batch_size)
        if state.step > longest:
            raise checkpoint.damaged(latest.state, f"it is at step {state.step}, but {state.epoch} epochs of "
                                                   f"this run take at most {longest}")
        runfolder.check_metrics(folder, list(state.history), latest.state)
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
        torch.manual_seed(derived_seed(options.seed, epoch, "layers", context.rank))
        augmenter = None
        if self.augment.geometric or self.augment.erasing:
            augmenter = Augmenter(self.augment, device, derived_seed(options.seed, epoch, "augment", context.rank))
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen, lr = 0, options.lr

        def running() -> tuple[float, float]:
            return loss_sum.item() / seen, correct.item() / seen

        report.start_epoch(epoch, data.steps_per_epoch(options.batch_size, context.world_size))
        started = time.perf_counter()
        batches = data.train_batches(derived_seed(options.seed, epoch, "order"), options.batch_size,
                                     context.rank, context.world_size)
        for done, (images, labels) in enumerate(batches, start=1):
            lr = schedule.apply(optimizer, step)
            step += 1
            x = data.preprocess(images, augmenter)
            with session.autocast(device, self.amp):
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
                "sha256": session.data_sha256(data),
            },
            "environment": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "device": str(context.device),
                "device_name": torch.cuda.get_device_name(context.device) if context.is_cuda else platform.processor(),
                "world_size": context.world_size,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            "init_from": asdict(self.init_from) if self.init_from is not None else None,
        }


def final_softmax_warnings(net: Network) -> list[str]:
    """A warning when the network ends in a softmax: the runner's loss is cross-entropy on the scores (logits),
    which applies its own log-softmax; probabilities fed to it squash the loss and slow training down."""
    from archdsl import ir
    from archdsl.source import render_diagnostic

    network = getattr(net, "ir", None)  # a compiled network's; the tests' stand-ins have none
    if network is None:
        return []
    last = _final_layer(network.body)
    if last is None or last.kind != "softmax":
        return []
    assert isinstance(last, ir.Layer)
    return [render_diagnostic(
        "warning", f"network '{net.name}' ends in a softmax, but archdsl train applies cross-entropy to the "
                   "network's outputs, which takes scores (logits) and applies its own softmax",
        last.span, hint="drop the final softmax: the scores' argmax is the same class, and torch.softmax on "
                        "the outputs gives the probabilities (archdsl predict prints them)")]


def _final_layer(nodes: tuple) -> Any:
    """The layer that computes a network's output: the last node, looked into when it is a block call."""
    from archdsl import ir

    while nodes:
        node = nodes[-1]
        if isinstance(node, ir.Layer):
            return node
        if not isinstance(node, ir.Block):
            return None  # a join: its branches' last layers are not the output
        nodes = node.body
    return None


def _split_sizes(data: ImageData) -> str:
    sizes = f"{len(data.train_labels):,} training"
    if data.val_labels is not None:
        sizes += f", {len(data.val_labels):,} validation"
    return f"{sizes} and {len(data.test_labels):,} test images"


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


@contextlib.contextmanager
def _compile_errors(enabled: bool) -> Iterator[None]:
    """torch.compile fails at the first call, deep inside dynamo or inductor: say so in one line."""
    try:
        yield
    except Exception as err:
        if enabled and type(err).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise BackendError(f"torch.compile failed: {first_line(err)}", hint="run without --compile") from None
        raise
