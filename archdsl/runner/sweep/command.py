"""``archdsl sweep``: option parsing only; the work is in run.py.

The training options are ``archdsl train``'s own (the same click options, so that a sweep takes whatever
train takes), less those a sweep decides per configuration (``--param``, ``--lr``, ``--seed``, ``--out``) or
has no use for (``--resume`` of a run). Nothing heavy is imported here.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import click

from archdsl.arguments import PATH, spec_argument
from archdsl.errors import UsageError
from archdsl.runner.options import TrainOptions

# What --resume may change: where the configurations train and where the data is, never what they compute
# (--threads changes the last bits of new runs only; an interrupted run keeps its own count unless given).
RESUMABLE = ("jobs", "ray", "threads", "device", "data_dir")
_DECIDED_HERE = ("param", "lr", "seed", "out", "resume")


def _train_options() -> list[click.Parameter]:
    """archdsl train's options that set a TrainOptions field (and --network, --input), in its order."""
    from archdsl.runner.commands import train_command

    fields = {field.name for field in dataclasses.fields(TrainOptions)}
    return [param for param in train_command.params
            if param.name not in _DECIDED_HERE and (param.name in fields or param.name in ("network", "input"))]


@click.command("sweep", short_help="Train a spec's family of networks and compare them.")
@spec_argument
@click.option("--param", "-p", multiple=True, metavar="NAME=CHOICES",
              help="A network parameter and its choices (repeatable): 16,32,64; a range 1..4; lists "
                   "[1,1],[2,2]; lists that vary by item [1..2,1|3].")
@click.option("--lr", metavar="X[,X...]", help="The learning rates to try, e.g. 0.05,0.1. Default: 0.1.")
@click.option("--samples", type=int, metavar="N",
              help="Train N configurations drawn at random (without repeats) instead of the whole grid.")
@click.option("--seed", type=int, metavar="S", help="Seed of the samples and of every run. Default: 0.")
@click.option("--max-params", type=int, metavar="N", help="Skip configurations with more parameters.")
@click.option("--max-macs", type=int, metavar="N", help="Skip configurations with more MACs per image.")
@click.option("--jobs", type=int, metavar="N",
              help="Train N configurations at a time, in processes that share the cores. Default: 1.")
@click.option("--ray", metavar="ADDRESS",
              help="Train each configuration as a task on the Ray cluster at ADDRESS (the 'ray' extra); the "
                   "sweep folder, spec and data must be on a file system that its nodes share.")
@click.option("--out", type=PATH, metavar="SWEEP_DIR", help="The new sweep folder. Default: sweeps/NETWORK-TIME.")
@click.option("--resume", type=PATH, metavar="SWEEP_DIR",
              help="Go on with the sweep in SWEEP_DIR where it stopped, with its options.")
def sweep_command(spec: Path, param: tuple[str, ...], lr: str | None, samples: int | None, seed: int | None,
                  max_params: int | None, max_macs: int | None, jobs: int | None, ray: str | None, out: Path | None,
                  resume: Path | None, network: str | None, input: str | None, **given: Any) -> None:
    """Train every configuration of SPEC's design space (a grid of the --param choices and --lr values, or
    --samples of it), each as an ordinary run folder under SWEEP_DIR/runs, and compare them.

    Configurations that fail to compile or exceed --max-params/--max-macs are reported and skipped.
    Writes SWEEP_DIR/sweep.csv and the plots accuracy.png (against MACs and parameters, Pareto front marked)
    and edf.png (error distribution functions by parameter value). A killed sweep goes on with --resume.
    """
    from archdsl.runner.sweep import run

    given = {name: value for name, value in given.items() if value is not None}
    where = {"jobs": 1 if jobs is None else jobs, "ray": ray}
    try:
        if resume is None:
            options = TrainOptions(**given)
            run.start(spec, param, lr, options, network=network, input=input, samples=samples,
                      seed=0 if seed is None else seed, max_params=max_params, max_macs=max_macs, out=out,
                      echo=click.echo, **where)
            return
        named = {"param": param, "lr": lr, "samples": samples, "seed": seed, "max_params": max_params,
                 "max_macs": max_macs, "out": out, "network": network, "input": input, **given}
        fixed = sorted(name for name, value in named.items() if value not in (None, ()) and name not in RESUMABLE)
        if fixed:
            flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
            raise UsageError(f"--resume goes on with the sweep as it was planned; drop {flags}",
                             hint="only --jobs, --ray, --threads, --device and --data-dir may change when resuming")
        run.resume(spec, resume, threads=given.get("threads"), device=given.get("device"),
                   data_dir=given.get("data_dir"), echo=click.echo, **where)
    except KeyboardInterrupt:
        folder = resume or out
        hint = f"continue with: archdsl sweep {spec} --resume {folder}" if folder else "continue it with --resume"
        click.echo(f"archdsl: sweep interrupted; {hint}", err=True)
        sys.exit(130)


sweep_command.params.extend(_train_options())


def register(app: click.Group) -> None:
    """Add ``sweep`` to the archdsl command line (whose group reports its ArchErrors)."""
    app.add_command(sweep_command)
