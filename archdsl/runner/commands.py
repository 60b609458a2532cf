"""``archdsl train``, ``archdsl eval`` and ``archdsl predict``: option parsing only; the work is in train.py
and evaluation.py.

Nothing heavy is imported here at module import (``archdsl compile`` must start without torch):
torch arrives with ``archdsl.runner.train``, imported inside the commands.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from archdsl.arguments import (
    input_option,
    load_network,
    load_network_as_run,
    network_option,
    param_option,
    spec_argument,
)
from archdsl.errors import UsageError
from archdsl.runner.options import (
    AMP_MODES,
    DEVICES,
    INITS,
    KEEPS,
    LOGS,
    MONITORS,
    OPTIMIZERS,
    SCHEDULES,
    WEIGHTS,
)

# The options that --resume may change: none of them changes what an epoch computes, except --threads
# in the last bits of its sums. --reschedule lets it change the learning rate's schedule as well.
RESUMABLE = ("epochs", "device", "data_dir", "threads", "allow_divergence", "patience", "log")
RESCHEDULED = ("lr", "schedule", "warmup")


def run_options(command):
    """What train and eval share: the spec's parameters, network and input, the data, the device and the
    threads."""
    options = [
        param_option,
        network_option,
        input_option,
        click.option("--data", metavar="fashion-mnist|mnist|cifar-10|cifar-100|PATH",
                     help="fashion-mnist or mnist (standard IDX files), cifar-10 or cifar-100 (their binary "
                          "releases; all four downloaded when absent), a folder with train/CLASS/* and test/CLASS/* "
                          "images, or an .npz with x_train, y_train, x_test, y_test. Default: fashion-mnist."),
        click.option("--data-dir", metavar="DIR",
                     help="Where to look for (and download) known data sets before $ARCHDSL_DATA and "
                          "~/.cache/archdsl."),
        click.option("--device", type=click.Choice(DEVICES), help="auto picks CUDA when there is a GPU. Default: auto."),
        click.option("--threads", type=int, metavar="N",
                     help="torch's CPU threads. Default: the cores not busy with other work when the run starts "
                          "(at most torch's own count); run.json records it, and eval and --resume take the run's."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


weights_option = click.option("--weights", type=click.Choice(WEIGHTS), default="last", show_default=True,
                              help="The run's last checkpoint, or its best epoch's (by the run's --monitor).")


class _Validation(click.ParamType):
    """--val: a count of examples (5000) or a fraction of the training split (0.1)."""

    name = "N|FRACTION"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return value
        try:
            return int(value)
        except ValueError:
            pass
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a count of examples nor a fraction", param, ctx)


@click.command("train", short_help="Train a network on an image data set.")
@click.argument("spec", type=click.Path(path_type=Path), metavar="[SPEC]", required=False)
@run_options
@click.option("--epochs", type=int, metavar="N", help="Epochs to train (on --resume: the new total). Default: 10.")
@click.option("--batch-size", type=int, metavar="N", help="Global batch size, split across torchrun processes. Default: 256.")
@click.option("--lr", type=float, metavar="X", help="Peak learning rate. Default: 0.1.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="Default: sgd.")
@click.option("--momentum", type=float, metavar="X", help="SGD momentum. Default: 0.")
@click.option("--weight-decay", type=float, metavar="X", help="L2 penalty (decoupled for adamw). Default: 0.")
@click.option("--schedule", type=click.Choice(SCHEDULES),
              help="Learning-rate schedule after the warm-up; cosine and onecycle end at zero. Default: constant.")
@click.option("--warmup", type=float, metavar="EPOCHS",
              help="Linear warm-up, in epochs. Default: 0; 30% of the epochs for onecycle.")
@click.option("--label-smoothing", type=float, metavar="X", help="Label smoothing of the training loss. Default: 0.")
@click.option("--clip-grad", type=float, metavar="NORM", help="Clip the gradient's norm to NORM.")
@click.option("--resize", type=int, metavar="N",
              help="Resize images to NxN on the device (bilinear, antialiased); must match the network's input.")
@click.option("--augment", metavar="LIST",
              help="Augmentation on the device, comma-separated: crop[=PAD[:zero|reflect]], flip, erase[=P], "
                   "cutout=SIZE, or none. Default: crop=4:zero,flip for CIFAR, none otherwise.")
@click.option("--val", type=_Validation(),
              help="Hold out N training examples (or a fraction, 0.1) as a seeded validation split; metrics.csv "
                   "gains val_loss and val_acc.")
@click.option("--keep", type=click.Choice(KEEPS),
              help="Which checkpoints stay: the last, the best epoch's by --monitor, or both. Default: both.")
@click.option("--monitor", type=click.Choice(MONITORS),
              help="The metric that picks the best epoch and that --patience watches. Default: val_acc with "
                   "--val, test_acc without.")
@click.option("--patience", type=int, metavar="N", help="Stop after N epochs without an improvement of --monitor.")
@click.option("--log", type=click.Choice(LOGS), help="A log beside metrics.csv: TensorBoard's event files.")
@click.option("--init-from", type=click.Path(), metavar="RUN_DIR",
              help="Start from the weights of another run's last checkpoint (same layers and shapes).")
@click.option("--amp", type=click.Choice(AMP_MODES),
              help="Autocast. Default: auto, bf16 on CUDA and fp32 on the CPU (bf16 there is opt-in: faster on CPUs "
                   "with AMX or AVX512-BF16).")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC memory layout. Default: on (faster for convolutions on the CPU as on CUDA).")
@click.option("--compile", is_flag=True, default=None, help="torch.compile the model.")
@click.option("--seed", type=int, metavar="N",
              help="Seed of the weights, the data order, the augmentation and the validation split; a CPU run "
                   "repeats exactly at the same --threads. Default: 0.")
@click.option("--init", type=click.Choice(INITS), help="Weight initialisation. Default: default.")
@click.option("--limit", type=int, metavar="N", help="Use only the first N examples of each split (quick trials).")
@click.option("--allow-divergence", is_flag=True, default=None,
              help="Train on when the loss becomes NaN or infinite; by default the run stops there, its folder "
                   "keeping the last finished epoch.")
@click.option("--out", type=click.Path(), metavar="RUN_DIR",
              help="The new run folder. Default: runs/NETWORK-TIME.")
@click.option("--resume", type=click.Path(path_type=Path), metavar="RUN_DIR",
              help="Continue the run in RUN_DIR from its last finished epoch, with its options.")
@click.option("--reschedule", is_flag=True,
              help="With --resume: train on with a new --lr, --schedule or --warmup from the next epoch "
                   "(recorded in run.json).")
@click.option("--config", type=click.Path(path_type=Path), metavar="RUN_JSON",
              help="A new run with the options a run.json records (those given here replace them).")
@click.option("--from", "from_", type=click.Path(path_type=Path), metavar="RUN_DIR",
              help="A new run with the options and the spec (its copy, imports included) of the run in RUN_DIR.")
def train_command(spec: Path | None, param: tuple[str, ...], network: str | None, input: str | None,
                  resume: Path | None, reschedule: bool = False, config: Path | None = None,
                  from_: Path | None = None, **given: Any) -> None:
    """Train the network of SPEC on an image data set; the same command under torchrun uses
    DistributedDataParallel.

    Writes a run folder with the spec (and the files it imports), run.json, metrics.csv, curves.png/.svg and
    checkpoints. With --resume, --config or --from, SPEC and --param, --network and --input default to the
    run's own.
    """
    from archdsl.runner.options import TrainOptions
    from archdsl.runner.runfolder import SPEC_FILE, SpecArgs, default_folder, read, read_config

    given = {name: value for name, value in given.items() if value is not None}  # by TrainOptions' field names
    if resume is not None:
        _resume(spec, param, network, input, resume, reschedule, given)
        return
    if reschedule:
        raise UsageError("--reschedule changes the schedule of a run that --resume continues",
                         hint="a new run takes --lr, --schedule and --warmup as they are")
    if config is not None and from_ is not None:
        raise UsageError("--config and --from both name the run to replay; give one of them")
    if config is None and from_ is None:
        if spec is None:
            raise UsageError("missing the spec to train", hint="archdsl train SPEC [OPTIONS]; see archdsl train --help")
        options = TrainOptions(**given)
        net = load_network(spec, param, network, input)
        args = SpecArgs(str(spec), param, network, input)
    else:
        replayed = read(from_) if from_ is not None else read_config(config)
        # The run's own copy of its spec, where it has one (a run folder keeps the files the spec imports).
        kept = replayed.folder / SPEC_FILE
        spec = spec if spec is not None else kept if kept.is_file() else Path(replayed.spec.path or SPEC_FILE)
        options = replayed.options.replace(**{"out": None, **given})  # a new folder, never the run's own
        net = load_network_as_run(spec, param, network, input, replayed.spec)
        args = SpecArgs(str(spec), param or replayed.spec.params, network or replayed.spec.network,
                        input or replayed.spec.input)
    if options.out is None:
        options = options.replace(out=str(default_folder(net.name)))
    with _interruptible(spec, Path(options.out), new=True):
        from archdsl.runner import train

        train.start(net, options, spec=args)


def _resume(spec: Path | None, param: tuple[str, ...], network: str | None, input: str | None, run: Path,
            reschedule: bool, given: dict[str, Any]) -> None:
    from archdsl.runner.runfolder import SPEC_FILE, read

    allowed = RESUMABLE + RESCHEDULED if reschedule else RESUMABLE
    fixed = sorted(name for name in given if name not in allowed)
    if fixed:
        flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
        rescheduling = [name for name in fixed if name in RESCHEDULED]
        raise UsageError(f"--resume continues a run with the options it was started with; drop {flags}",
                         hint="only --epochs, --device, --data-dir, --threads, --allow-divergence, --patience and "
                              "--log may change when resuming"
                              + ("; --reschedule lets --lr, --schedule and --warmup change from the next epoch"
                                 if rescheduling else ""))
    info = read(run)
    spec = spec if spec is not None else run / SPEC_FILE
    net = load_network_as_run(spec, param, network, input, info.spec)
    with _interruptible(spec, run, new=False):
        from archdsl.runner import train

        train.resume(net, run, reschedule=reschedule, **{name: given.get(name) for name in allowed})


@click.command("eval", short_help="Test a trained run's checkpoint: accuracy per class, confusion matrix.")
@spec_argument
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, metavar="RUN_DIR",
              help="The run folder whose checkpoint to evaluate.")
@weights_option
@run_options
def eval_command(spec: Path, checkpoint: Path, weights: str, param: tuple[str, ...], network: str | None,
                 input: str | None, data: str | None, data_dir: str | None, device: str | None,
                 threads: int | None) -> None:
    """Report the test loss and accuracy of a run's last (or best) checkpoint for SPEC (on the run's data unless
    --data), the accuracy of each class and the confusion matrix, which is also drawn in the run folder
    (confusion.png, confusion.svg).

    --param, --network and --input default to the run's own.
    """
    from archdsl.runner.runfolder import read

    info = read(checkpoint)
    net = load_network_as_run(spec, param, network, input, info.spec)
    from archdsl.runner import evaluation

    result = evaluation.evaluate(net, checkpoint, device=device, data_dir=data_dir, data=data, threads=threads,
                                 weights=weights)
    click.echo(result.report())


@click.command("predict", short_help="Classify image files with a trained run: the top classes.")
@spec_argument
@click.argument("images", nargs=-1, type=click.Path(path_type=Path), metavar="IMAGE...")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, metavar="RUN_DIR",
              help="The run folder whose checkpoint to use.")
@weights_option
@click.option("--top", type=int, default=5, show_default=True, metavar="K", help="How many classes to list.")
@param_option
@network_option
@input_option
@click.option("--device", type=click.Choice(DEVICES), help="auto picks CUDA when there is a GPU. Default: auto.")
@click.option("--threads", type=int, metavar="N", help="torch's CPU threads. Default: the run's.")
def predict_command(spec: Path, images: tuple[Path, ...], checkpoint: Path, weights: str, top: int,
                    param: tuple[str, ...], network: str | None, input: str | None, device: str | None,
                    threads: int | None) -> None:
    """Print the top classes of each IMAGE, with their probabilities, by a run's last (or best) checkpoint.

    Each image is read as the run's own were: grayscale or RGB as the network takes them, resized to its input
    and normalised with the run's statistics; the class names are the data set's.
    """
    from archdsl.runner.runfolder import read

    info = read(checkpoint)
    net = load_network_as_run(spec, param, network, input, info.spec)
    from archdsl.runner import evaluation

    found = evaluation.predict(net, checkpoint, list(images), top=top, weights=weights, device=device,
                               threads=threads)
    click.echo("\n".join(line for prediction in found for line in prediction.lines()))


def register(app: click.Group) -> None:
    """Add ``train``, ``eval`` and ``predict`` to the archdsl command line (whose group reports their ArchErrors)."""
    app.add_command(train_command)
    app.add_command(eval_command)
    app.add_command(predict_command)


@contextlib.contextmanager
def _interruptible(spec: Path, run_dir: Path, *, new: bool) -> Iterator[None]:
    """Ctrl-C ends a run with how to continue it rather than a traceback; a new run interrupted before
    it made its run folder (its run.json) has nothing to continue."""
    from archdsl.runner.runfolder import RUN_JSON

    existed = (run_dir / RUN_JSON).exists()
    try:
        yield
    except KeyboardInterrupt:
        if new and (existed or not (run_dir / RUN_JSON).exists()):
            click.echo("archdsl: interrupted before the run folder was made; run the same command to start again",
                       err=True)
        else:
            click.echo(f"archdsl: interrupted; continue with: archdsl train {spec} --resume {run_dir}", err=True)
        sys.exit(130)
