"""Training a sweep's configurations: one after another in this process, in ``--jobs N`` processes, or as
Ray tasks on a cluster (``--ray ADDRESS``).

Each configuration is a ``Job`` (plain data, so that it travels to another process or machine) that
``train_configuration`` turns into an ordinary run folder through the runner's own ``train.start``, or
``train.resume`` when the folder holds a run that a kill interrupted. Whatever the place, the process that
runs the sweep alone writes the sweep folder's records, in the order the configurations end.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archdsl.errors import ArchError, UsageError, first_line

PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Job:
    """One configuration to train, with paths that hold where it will run."""

    run: str
    run_dir: str
    log: str
    spec: str  # the path to load
    spec_given: str  # the path as the user gave it, which run.json records
    params: tuple[str, ...]
    network: str | None
    input: str | None
    options: dict[str, Any]  # TrainOptions of a new run (its lr, seed, out, threads)
    changes: dict[str, Any]  # what a resume of an interrupted run may change: device, data_dir, threads


@dataclass(frozen=True)
class Outcome:
    run: str
    error: str | None  # None: trained; else the diagnostic that ended it


def train_configuration(job: Job) -> Outcome:
    """Train (or finish training) one configuration; an ArchError is its outcome, anything else a bug."""
    from archdsl.arguments import load_network
    from archdsl.runner import train
    from archdsl.runner.options import TrainOptions
    from archdsl.runner.runfolder import RUN_JSON, SpecArgs

    run_dir = Path(job.run_dir)
    with open(job.log, "a", encoding="utf-8") as log:
        try:
            net = load_network(Path(job.spec), job.params, job.network, job.input)
            if not (run_dir / RUN_JSON).exists():
                spec = SpecArgs(job.spec_given, job.params, job.network, job.input)
                train.start(net, TrainOptions(**job.options), spec=spec, stream=log)
            elif not train.finished(run_dir):  # else killed once it had finished: nothing to do
                train.resume(net, run_dir, stream=log, **job.changes)
        except ArchError as err:
            print(err.render(), file=log)
            return Outcome(job.run, err.render())
    return Outcome(job.run, None)


def run_here(jobs: list[Job], done: Callable[[Outcome], None]) -> None:
    """One after another, in this process."""
    for job in jobs:
        done(train_configuration(job))


def run_processes(jobs: list[Job], workers: int, done: Callable[[Outcome], None]) -> None:
    """In ``workers`` processes (spawned: a fork of a process that has run torch's thread pools is unsafe),
    each ending with this one, however this one ends."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_setup,
                               initargs=(os.getpid(),))
    try:
        pending = {pool.submit(train_configuration, job) for job in jobs}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                done(future.result())
    except BaseException as err:
        # Ctrl-C, an error or a worker that died: end the workers at once rather than wait for them.
        for child in multiprocessing.active_children():
            child.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        if isinstance(err, BrokenProcessPool):
            raise UsageError("a process of the sweep ended while it trained a configuration (killed, or out of "
                             "memory?)", hint="the configurations that finished are kept; go on with --resume, "
                                              "with fewer --jobs if memory ran out") from None
        raise
    pool.shutdown()


def connect_ray(address: str, threads: int) -> None:
    """Connect this process to the Ray cluster at ``address`` (checked with check_ray), which must have the
    ``threads`` CPUs that each configuration's task asks for."""
    import ray

    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise UsageError(f"cannot connect to the Ray cluster at {address}: {first_line(err)}",
                         hint="start one with `ray start --head`, and pass the address it prints") from None
    cpus = ray.cluster_resources().get("CPU", 0)
    if cpus < threads:  # Ray would wait for CPUs that never come
        ray.shutdown()
        raise UsageError(f"each configuration asks the Ray cluster at {address} for {threads} CPUs (--threads), "
                         f"but it has {cpus:g}", hint=f"pass --threads {max(int(cpus), 1)} or fewer")


def run_ray(jobs: list[Job], threads: int, done: Callable[[Outcome], None]) -> None:
    """As Ray tasks of ``threads`` CPUs each on the cluster that connect_ray joined; the sweep folder, the spec
    and the data must be where every node sees them (a shared file system)."""
    import ray

    remote = ray.remote(num_cpus=threads, max_retries=0)(train_configuration)
    pending = {}
    try:
        pending = {remote.remote(job): job for job in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except ray.exceptions.RayTaskError:
                raise  # an exception of archdsl's own in the task: a bug
            except ray.exceptions.RayError as err:  # the task's worker or node died: as a kill would
                outcome = Outcome(job.run, f"error: the Ray task ended before the run did: {first_line(err)}")
            done(outcome)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        ray.shutdown()


def check_ray(address: str) -> None:
    """Before a sweep starts: Ray is installed, and a HOST:PORT address answers (ray.init would retry one that
    does not for minutes)."""
    import socket

    try:
        import ray  # noqa: F401
    except ModuleNotFoundError:
        raise UsageError("--ray needs Ray, which is not installed; it comes with archdsl's 'ray' extra",
                         hint="pip install 'archdsl[ray]', or run the sweep here with --jobs N") from None

    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", ray://: Ray's own to resolve
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise UsageError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}",
                         hint="start one with `ray start --head`, and pass the address it prints") from None


def _worker_setup(sweep: int) -> None:
    """In each worker of --jobs: die with the sweep (a worker left training would hold its run's lock), and
    leave Ctrl-C to the sweep, which stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != sweep:  # the sweep ended before prctl took hold
            os._exit(1)
