"""``archdsl train`` and ``archdsl eval``: option parsing only; the work is in train.py.

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
from archdsl.runner.options import AMP_MODES, DEVICES, INITS, OPTIMIZERS, SCHEDULES

# The options that --resume may change: none of them changes what an epoch computes, except --threads
# in the last bits of its sums.
RESUMABLE = ("epochs", "device", "data_dir", "threads", "allow_divergence")


def run_options(command):
    """What train and eval share: the spec's parameters, network and input, the data, the device and the
    threads."""
    options = [
        param_option,
        network_option,
        input_option,
        click.option("--data", metavar="fashion-mnist|mnist|PATH",
                     help="fashion-mnist or mnist (standard IDX files, downloaded when absent), a folder with "
                          "train/CLASS/* and test/CLASS/* images, or an .npz with x_train, y_train, x_test, y_test. "
                          "Default: fashion-mnist."),
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


@click.command("train", short_help="Train a network on an image data set.")
@spec_argument
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
@click.option("--amp", type=click.Choice(AMP_MODES),
              help="Autocast. Default: auto, bf16 on CUDA and fp32 on the CPU (bf16 there is opt-in: faster on CPUs "
                   "with AMX or AVX512-BF16).")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC memory layout. Default: on (faster for convolutions on the CPU as on CUDA).")
@click.option("--compile", is_flag=True, default=None, help="torch.compile the model.")
@click.option("--seed", type=int, metavar="N",
              help="Seed of the weights and the data order; a CPU run repeats exactly at the same --threads. "
                   "Default: 0.")
@click.option("--init", type=click.Choice(INITS), help="Weight initialisation. Default: default.")
@click.option("--limit", type=int, metavar="N", help="Use only the first N examples of each split (quick trials).")
@click.option("--allow-divergence", is_flag=True, default=None,
              help="Train on when the loss becomes NaN or infinite; by default the run stops there, its folder "
                   "keeping the last finished epoch.")
@click.option("--out", type=click.Path(), metavar="RUN_DIR",
              help="The new run folder. Default: runs/NETWORK-TIME.")
@click.option("--resume", type=click.Path(path_type=Path), metavar="RUN_DIR",
              help="Continue the run in RUN_DIR from its last finished epoch, with its options.")
def train_command(spec: Path, param: tuple[str, ...], network: str | None, input: str | None,
                  resume: Path | None, **given: Any) -> None:
    """Train the network of SPEC on an image data set; the same command under torchrun uses
    DistributedDataParallel.

    Writes a run folder with the spec, run.json, metrics.csv, curves.png/.svg and a checkpoint per epoch.
    With --resume, --param, --network and --input default to the run's own.
    """
    from archdsl.runner.options import TrainOptions
    from archdsl.runner.runfolder import SpecArgs, default_folder, read

    given = {name: value for name, value in given.items() if value is not None}  # by TrainOptions' field names
    if resume is None:
        options = TrainOptions(**given)
        net = load_network(spec, param, network, input)
        if options.out is None:
            options = options.replace(out=str(default_folder(net.name)))
        with _interruptible(spec, Path(options.out), new=True):
            from archdsl.runner import train

            train.start(net, options, spec=SpecArgs(str(spec), param, network, input))
        return
    fixed = sorted(name for name in given if name not in RESUMABLE)
    if fixed:
        flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
        raise UsageError(f"--resume continues a run with the options it was started with; drop {flags}",
                         hint="only --epochs, --device, --data-dir, --threads and --allow-divergence may change "
                              "when resuming")
    info = read(resume)
    net = load_network_as_run(spec, param, network, input, info.spec)
    with _interruptible(spec, resume, new=False):
        from archdsl.runner import train

        train.resume(net, resume, **{name: given.get(name) for name in RESUMABLE})


@click.command("eval", short_help="Test a trained run's last checkpoint.")
@spec_argument
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, metavar="RUN_DIR",
              help="The run folder whose last checkpoint to evaluate.")
@run_options
def eval_command(spec: Path, checkpoint: Path, param: tuple[str, ...], network: str | None, input: str | None,
                 data: str | None, data_dir: str | None, device: str | None, threads: int | None) -> None:
    """Report the test loss and accuracy of a run's last checkpoint for SPEC (on the run's data unless --data).

    --param, --network and --input default to the run's own.
    """
    from archdsl.runner.runfolder import read

    info = read(checkpoint)
    net = load_network_as_run(spec, param, network, input, info.spec)
    from archdsl.runner import train

    result = train.evaluate(net, checkpoint, device=device, data_dir=data_dir, data=data, threads=threads)
    click.echo(result.line())


def register(app: click.Group) -> None:
    """Add ``train`` and ``eval`` to the archdsl command line (whose group reports their ArchErrors)."""
    app.add_command(train_command)
    app.add_command(eval_command)


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
