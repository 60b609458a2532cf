"""``archdsl train`` and ``archdsl eval``: option parsing only; the work is in train.py.

Nothing heavy is imported here at module import (``archdsl compile`` must start without torch):
torch arrives with ``archdsl.runner.train``, imported inside the commands.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from archdsl.errors import UsageError

RESUMABLE = ("epochs", "device", "data_dir")  # the options that --resume may change

SpecArg = Annotated[Path, typer.Argument(metavar="SPEC", help="The .arch spec of the network.", show_default=False)]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", metavar="NAME=VALUE",
                 help="Set a parameter of the spec (repeatable). On --resume/eval, default: the run's own."),
]
NetworkOpt = Annotated[str | None, typer.Option(help="Which network of the spec, when it has several.")]
InputOpt = Annotated[str | None, typer.Option("--input", metavar="CxHxW",
                                              help="Override the network's declared input shape.")]
DataOpt = Annotated[str | None, typer.Option(
    metavar="fashion-mnist|mnist|PATH",
    help="fashion-mnist or mnist (standard IDX files, downloaded when absent), a folder with "
         "train/CLASS/* and test/CLASS/* images, or an .npz with x_train, y_train, x_test, y_test. "
         "Default: fashion-mnist.")]
DataDirOpt = Annotated[str | None, typer.Option(
    metavar="DIR", help="Where to look for (and download) known data sets before $ARCHDSL_DATA and "
                        "~/.cache/archdsl.")]
DeviceOpt = Annotated[str | None, typer.Option(metavar="auto|cuda|cpu",
                                               help="auto picks CUDA when there is a GPU. Default: auto.")]


def train_command(
    spec: SpecArg,
    param: ParamOpt = None,
    network: NetworkOpt = None,
    input: InputOpt = None,
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs to train (on --resume: the new total). Default: 10.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Global batch size, split across torchrun processes. Default: 256.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate. Default: 0.1.")] = None,
    optimizer: Annotated[str | None, typer.Option(metavar="sgd|adam|adamw", help="Default: sgd.")] = None,
    momentum: Annotated[float | None, typer.Option(help="SGD momentum. Default: 0.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="L2 penalty (decoupled for adamw). Default: 0.")] = None,
    schedule: Annotated[str | None, typer.Option(
        metavar="constant|cosine|onecycle",
        help="Learning-rate schedule after the warm-up; cosine and onecycle end at zero. Default: constant.")] = None,
    warmup: Annotated[float | None, typer.Option(
        metavar="EPOCHS", help="Linear warm-up, in epochs. Default: 0; 30% of the epochs for onecycle.")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="Label smoothing of the training loss. Default: 0.")] = None,
    clip_grad: Annotated[float | None, typer.Option(metavar="NORM", help="Clip the gradient's norm to NORM.")] = None,
    resize: Annotated[int | None, typer.Option(
        metavar="N", help="Resize images to NxN on the device (bilinear, antialiased); must match the "
                          "network's input.")] = None,
    device: DeviceOpt = None,
    amp: Annotated[str | None, typer.Option(
        metavar="bf16|fp16|off", help="Autocast on CUDA. Default: bf16 on CUDA; the CPU trains in fp32.")] = None,
    channels_last: Annotated[bool | None, typer.Option(
        "--channels-last/--no-channels-last", help="NHWC memory layout. Default: on for CUDA, off for the CPU.",
        show_default=False)] = None,
    compile: Annotated[bool | None, typer.Option("--compile", help="torch.compile the model.", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the weights and the data order; a CPU run repeats exactly. Default: 0.")] = None,
    init: Annotated[str | None, typer.Option(metavar="default|d2l", help="Weight initialisation. Default: default.")] = None,
    limit: Annotated[int | None, typer.Option(metavar="N", help="Use only the first N examples of each split (quick trials).")] = None,
    out: Annotated[Path | None, typer.Option(metavar="RUN_DIR", help="The new run folder. Default: runs/NETWORK-TIME.")] = None,
    resume: Annotated[Path | None, typer.Option(
        metavar="RUN_DIR", help="Continue the run in RUN_DIR from its last finished epoch, with its options.")] = None,
) -> None:
    """Train a network on an image data set; the same command under torchrun uses DistributedDataParallel.

    Writes a run folder with the spec, run.json, metrics.csv, curves.png/.svg and a checkpoint per epoch.
    """
    from archdsl.cli import load_network
    from archdsl.runner.options import TrainOptions
    from archdsl.runner.runfolder import SpecArgs, default_folder, read

    given = {
        "data": data, "data_dir": data_dir, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "optimizer": optimizer, "momentum": momentum, "weight_decay": weight_decay, "schedule": schedule,
        "warmup": warmup, "label_smoothing": label_smoothing, "clip_grad": clip_grad, "resize": resize,
        "device": device, "amp": amp, "channels_last": channels_last, "compile": compile, "seed": seed,
        "init": init, "limit": limit, "out": str(out) if out is not None else None,
    }
    given = {name: value for name, value in given.items() if value is not None}
    if resume is None:
        options = TrainOptions(**given)
        net = load_network(spec, list(param or []), network, input)
        if options.out is None:
            options = options.replace(out=str(default_folder(net.name)))
        with _interruptible(spec, Path(options.out)):
            from archdsl.runner import train

            train.start(net, options, spec=SpecArgs(str(spec), tuple(param or ()), network, input))
        return
    fixed = sorted(name for name in given if name not in RESUMABLE)
    if fixed:
        flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
        raise UsageError(f"--resume continues a run with the options it was started with; drop {flags}",
                         hint="only --epochs, --device and --data-dir may change when resuming")
    info = read(resume)
    net = _load_as_run(load_network, spec, param, network, input, info.spec)
    with _interruptible(spec, resume):
        from archdsl.runner import train

        train.resume(net, resume, **{name: given.get(name) for name in RESUMABLE})


def eval_command(
    spec: SpecArg,
    checkpoint: Annotated[Path, typer.Option(metavar="RUN_DIR", help="The run folder whose last checkpoint to evaluate.")],
    param: ParamOpt = None,
    network: NetworkOpt = None,
    input: InputOpt = None,
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Report the test loss and accuracy of a run's last checkpoint (on the run's data unless --data)."""
    from archdsl.cli import load_network
    from archdsl.runner.runfolder import read

    info = read(checkpoint)
    net = _load_as_run(load_network, spec, param, network, input, info.spec)
    from archdsl.runner import train

    result = train.evaluate(net, checkpoint, device=device, data_dir=data_dir, data=data)
    typer.echo(result.line())


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``eval`` to the archdsl command line (call it after ``reports_errors``)."""
    from archdsl.cli import reports_errors

    app.command("train")(reports_errors(train_command))
    app.command("eval")(reports_errors(eval_command))


@contextlib.contextmanager
def _interruptible(spec: Path, run_dir: Path) -> Iterator[None]:
    """Ctrl-C ends a run with how to continue it rather than a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        typer.echo(f"archdsl: interrupted; continue with: archdsl train {spec} --resume {run_dir}", err=True)
        raise typer.Exit(130) from None


def _load_as_run(load_network: Any, spec: Path, param: list[str] | None, network: str | None,
                 input: str | None, saved: Any) -> Any:
    """Load the spec with the run's own --param/--network/--input unless the command line gives them."""
    params = list(param) if param else list(saved.params)
    return load_network(spec, params, network or saved.network, input or saved.input)
