"""Start and resume a sweep (``archdsl sweep``, docs/sweeps.md).

    from archdsl.runner.sweep import run
    from archdsl.runner.options import TrainOptions

    summary = run.start("specs/examples/smallvgg.arch", ["width=8,16"], "0.05,0.1",
                        TrainOptions(epochs=2, data_dir="../shared/datasets", limit=3000), out="sweeps/a")
    summary.best.run, summary.rows
    run.resume("specs/examples/smallvgg.arch", "sweeps/a")        # after a kill: goes on where it stopped

Every configuration of the design space (space.py) is compiled first: one that fails to compile, or that
exceeds ``max_params``/``max_macs``, is reported and skipped. The others train as ordinary run folders under
the sweep folder (folder.py) through the runner's ``train.start``, here or elsewhere (execute.py). After each
configuration ends, sweep.csv (results.py) and the plots (plots.py) are written again.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from archdsl.errors import ArchError, UsageError
from archdsl.runner.options import TrainOptions
from archdsl.runner.sweep import folder as sweep_folder
from archdsl.runner.sweep.execute import Job, Outcome, check_ray, connect_ray, run_here, run_processes, run_ray
from archdsl.runner.sweep.folder import Configuration, Plan, Result
from archdsl.runner.sweep.plots import write_plots
from archdsl.runner.sweep.results import (
    COMPILE_ERROR,
    FAILED,
    PENDING,
    TOO_LARGE,
    TRAINED,
    Row,
    best,
    trained,
    write_csv,
)
from archdsl.runner.sweep.space import Parameter, Space, parse_numbers, parse_parameter, value_text

LR = "--lr"  # the learning rate's name in the space: no network parameter can have it


@dataclass(frozen=True)
class Summary:
    folder: Path
    rows: tuple[Row, ...]
    written: tuple[Path, ...]

    @property
    def best(self) -> Row | None:
        return best(list(self.rows))

    def count(self, status: str) -> int:
        return sum(row.status == status for row in self.rows)


def start(spec: str | Path, parameters: Sequence[str], lr: str | None, options: TrainOptions, *,
          network: str | None = None, input: str | None = None, samples: int | None = None, seed: int = 0,
          max_params: int | None = None, max_macs: int | None = None, out: str | Path | None = None,
          jobs: int = 1, ray: str | None = None, echo: Callable[[str], None] = print) -> Summary:
    """Plan the sweep of ``spec`` over ``parameters`` (``-p`` items, NAME=CHOICES) and the learning rates
    ``lr`` (``0.05,0.1``; None: ``options.lr``), make its folder ``out`` and train it. ``seed`` draws the
    ``samples`` (None: the whole grid) and seeds every run."""
    _check_workers(jobs, ray)
    for name, limit in (("--max-params", max_params), ("--max-macs", max_macs)):
        if limit is not None and limit < 1:
            raise UsageError(f"{name} must be at least 1, got {limit}")
    space = _space(parameters, lr if lr is not None else repr(options.lr))
    definition, text = _network(spec, network)
    _check_names(definition, space)
    options = _absolute(options.replace(seed=seed))
    indices = space.indices(samples, seed)
    configurations = []
    for number, index in enumerate(indices, start=1):
        values = space.configuration(index)
        rate = float(values.pop(LR))
        options.replace(lr=rate)  # refuses a learning rate that no run may have, before anything is made
        params = tuple(f"{name}={value_text(value)}" for name, value in values.items())
        configurations.append(Configuration(sweep_folder.run_name(number, len(indices)), params, rate))
    plan = Plan(str(spec), hashlib.sha256(text.encode()).hexdigest(), network, input, tuple(parameters), lr,
                samples, seed, max_params, max_macs, options, tuple(configurations))
    folder = Path(out) if out is not None else Path("sweeps") / f"{definition.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    sweep_folder.check_new(folder)
    if ray is not None:
        connect_ray(ray, _threads(options, {}, jobs, ray))
    echo(f"sweep of {definition.name} in {spec}: {space.describe(samples)}; {_where(jobs, ray)}; sweep folder {folder}")
    with sweep_folder.create(folder, plan):
        return _run(plan, folder, Path(spec), definition.name, {}, jobs, ray, echo)


def resume(spec: str | Path, folder: str | Path, *, jobs: int = 1, ray: str | None = None,
           threads: int | None = None, device: str | None = None, data_dir: str | None = None,
           echo: Callable[[str], None] = print) -> Summary:
    """Go on with the sweep in ``folder`` where it stopped: configurations that finished are kept, a run that a
    kill interrupted is resumed (exactly, as ``archdsl train --resume``), failed ones are tried again. Only
    where it runs (``jobs``, ``ray``, ``threads``, ``device``) and where the data is may change."""
    _check_workers(jobs, ray)
    folder = Path(folder)
    plan = sweep_folder.read(folder)
    definition, text = _network(spec, plan.network)
    if hashlib.sha256(text.encode()).hexdigest() != plan.spec_sha256:
        raise UsageError(f"{spec} is not the spec this sweep began with: its text has changed",
                         file=str(spec), hint=f"pass the spec of {sweep_folder.SWEEP_JSON} ({plan.spec}) as it was, "
                                              "or start a new sweep")
    changes = {"threads": threads, "device": device,
               "data_dir": os.path.abspath(data_dir) if data_dir is not None else None}
    changes = {name: value for name, value in changes.items() if value is not None}
    plan.options.replace(**changes)  # refuses --threads 0 and the like before anything is written
    with sweep_folder.claim(folder):
        plan = sweep_folder.read(folder)  # as it is now that no other process runs the sweep
        if ray is not None:
            connect_ray(ray, _threads(plan.options, changes, jobs, ray))
        done = sum(result.status == TRAINED for result in sweep_folder.read_results(folder, plan).values())
        echo(f"resuming the sweep of {definition.name} in {folder}: {done} of {len(plan.configurations)} "
             f"configurations trained; {_where(jobs, ray)}")
        return _run(plan, folder, Path(spec), definition.name, changes, jobs, ray, echo)


def _run(plan: Plan, folder: Path, spec: Path, title: str, changes: dict, jobs: int, ray: str | None,
         echo: Callable[[str], None]) -> Summary:
    results = sweep_folder.read_results(folder, plan)
    rows = {c.run: _static(plan, spec, c, results.get(c.run), folder) for c in plan.configurations}
    for row in rows.values():
        if row.status in (COMPILE_ERROR, TOO_LARGE):
            echo(row.line())
    names = plan.names()
    write_csv(folder, list(rows.values()), names)
    threads = _threads(plan.options, changes, jobs, ray)
    to_train = [c for c in plan.configurations if rows[c.run].status == PENDING]
    jobs_to_run = [_job(plan, folder, spec, c, threads, changes, absolute=ray is not None) for c in to_train]
    for name in (sweep_folder.RUNS, sweep_folder.LOGS):
        (folder / name).mkdir(exist_ok=True)

    def done(outcome: Outcome) -> None:
        row = rows[outcome.run]
        if outcome.error is None:
            row = trained(row, folder / sweep_folder.RUNS / row.run)
        else:
            row = Row(row.run, row.values, row.lr, FAILED, row.params, row.macs, error=outcome.error)
        sweep_folder.write_result(folder, row.run, Result(sweep_folder.TRAINED if outcome.error is None
                                                          else sweep_folder.FAILED, outcome.error))
        rows[row.run] = row
        echo(row.line())
        write_csv(folder, list(rows.values()), names)
        write_plots(folder, list(rows.values()), names, title)

    if ray is not None:
        run_ray(jobs_to_run, threads, done)
    elif jobs > 1 and len(jobs_to_run) > 1:
        run_processes(jobs_to_run, min(jobs, len(jobs_to_run)), done)
    else:
        run_here(jobs_to_run, done)
    final = list(rows.values())
    written = [write_csv(folder, final, names), *write_plots(folder, final, names, title)]
    summary = Summary(folder, tuple(final), tuple(written))
    echo(_summary_line(summary))
    echo("wrote " + ", ".join(str(path) for path in written))
    failed = [row.run for row in final if row.status == FAILED]
    if failed:
        raise UsageError(f"{len(failed)} configuration{'s' if len(failed) > 1 else ''} failed to train "
                         f"(run{'s' if len(failed) > 1 else ''} {', '.join(failed)}): see above, or "
                         f"{folder / sweep_folder.LOGS}", file=str(folder),
                         hint=f"once the cause is fixed, archdsl sweep {spec} --resume {folder} tries them again")
    if summary.count(TRAINED) == 0:
        raise UsageError("no configuration of the sweep could be trained: each failed to compile or is too large",
                         file=str(folder), hint="see the reasons above")
    return summary


def _static(plan: Plan, spec: Path, configuration: Configuration, result: Result | None, folder: Path) -> Row:
    """A configuration's row before it trains (pending) or as it stands: compiled for its size, which decides
    whether it is skipped; trained already, or failing to compile."""
    from archdsl.arguments import load_network

    row = Row(configuration.run, configuration.values(), configuration.lr, PENDING)
    try:
        net = load_network(spec, configuration.params, plan.network, plan.input)
    except ArchError as err:
        return Row(row.run, row.values, row.lr, COMPILE_ERROR, error=err.render())
    row = Row(row.run, row.values, row.lr, PENDING, net.params, net.macs)
    over = [f"{count:,} {what}, more than --max-{what.lower()} {limit:,}"
            for count, what, limit in ((net.params, "params", plan.max_params), (net.macs, "MACs", plan.max_macs))
            if limit is not None and count > limit]
    if over:
        return Row(row.run, row.values, row.lr, TOO_LARGE, net.params, net.macs, error="; ".join(over))
    if result is not None and result.status == sweep_folder.TRAINED:
        return trained(row, folder / sweep_folder.RUNS / row.run)
    return row


def _job(plan: Plan, folder: Path, spec: Path, configuration: Configuration, threads: int | None,
         changes: dict, *, absolute: bool) -> Job:
    """What a worker needs to train ``configuration``; with absolute paths for workers elsewhere (Ray's start in
    folders of their own)."""
    place = (lambda path: str(Path(path).absolute())) if absolute else str
    run_dir = folder / sweep_folder.RUNS / configuration.run
    options = plan.options.replace(lr=configuration.lr, out=place(run_dir), **changes)
    if threads is not None and options.threads is None:
        options = options.replace(threads=threads)
    # An interrupted run goes on with its own thread count (from its run.json) unless --threads says
    # otherwise: another count would change the last bits of what it computes.
    return Job(configuration.run, place(run_dir), place(folder / sweep_folder.LOGS / f"{configuration.run}.log"),
               place(spec), str(spec), configuration.params, plan.network, plan.input, options.to_json(), changes)


def _threads(options: TrainOptions, changes: dict, jobs: int, ray: str | None) -> int | None:
    """Each run's torch threads: --threads; or one per Ray task; or the cores shared by the --jobs processes;
    or, one run at a time, the runner's own choice (the cores free when it starts)."""
    from archdsl.runner.threads import usable_cores

    given = changes.get("threads", options.threads)
    if given is not None:
        return given
    if ray is not None:
        return 1
    if jobs > 1:
        return max(1, usable_cores()[0] // jobs)
    return None


def _space(parameters: Sequence[str], lr: str) -> Space:
    swept = [parse_parameter(item) for item in parameters]
    seen = set()
    for parameter in swept:
        if parameter.name in seen:
            raise UsageError(f"--param sets '{parameter.name}' twice", hint="give all its choices in one --param")
        seen.add(parameter.name)
    swept.append(Parameter(LR, parse_numbers(lr, "--lr"), f"--lr {lr}"))
    return Space(tuple(swept))


def _network(spec: str | Path, network: str | None):
    """The network's definition in the spec (or the zoo) and the spec's text, read once for the whole sweep."""
    from archdsl import zoo
    from archdsl.program import load_program, read_source
    from archdsl.resolve import choose_network

    path, network = zoo.locate(spec, network)
    program = load_program(read_source(path))
    return choose_network(program, network), program.main.text


def _check_names(definition, space: Space) -> None:
    """Every swept name is a parameter of the network: one message for the whole sweep rather than a compile
    error per configuration."""
    import difflib

    names = [parameter.name for parameter in definition.params]
    for parameter in space.parameters:
        if parameter.name != LR and parameter.name not in names:
            close = difflib.get_close_matches(parameter.name, names, n=1)
            raise UsageError(f"network {definition.name} has no parameter '{parameter.name}'",
                             hint=f"did you mean '{close[0]}'?" if close else
                             f"its parameters: {', '.join(names) or 'none'}")


def _absolute(options: TrainOptions) -> TrainOptions:
    """--data-dir and a --data path made absolute, so that a resume from another folder reads the same data."""
    from archdsl.runner.datasets import KNOWN_SETS

    data = options.data if options.data in KNOWN_SETS else os.path.abspath(options.data)
    data_dir = os.path.abspath(options.data_dir) if options.data_dir is not None else None
    return options.replace(data=data, data_dir=data_dir)


def _check_workers(jobs: int, ray: str | None) -> None:
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if ray is not None and jobs != 1:
        raise UsageError("--jobs and --ray each choose where configurations train; give one of them",
                         hint="with --ray, the cluster runs as many at once as its CPUs allow")
    if ray is not None:
        check_ray(ray)


def _where(jobs: int, ray: str | None) -> str:
    if ray is not None:
        return f"as Ray tasks on {ray}"
    return "one configuration at a time" if jobs == 1 else f"{jobs} configurations at a time"


def _summary_line(summary: Summary) -> str:
    parts = [f"{summary.count(TRAINED)} trained"]
    for status, words in ((FAILED, "failed"), (COMPILE_ERROR, "failed to compile"), (TOO_LARGE, "too large")):
        if summary.count(status):
            parts.append(f"{summary.count(status)} {words}")
    line = f"{len(summary.rows)} configurations: {', '.join(parts)}"
    best = summary.best
    if best is not None:
        values = " ".join([*(f"{name}={value}" for name, value in best.values.items()), f"lr={best.lr:g}"])
        line += f"; best test_acc {best.accuracy:.4f}: run {best.run} ({values})"
    return line
