"""Where a run executes: the device, and under torchrun the process group and this process's rank.

``torchrun --nproc_per_node N archdsl train ...`` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; the same command then trains with DistributedDataParallel, nccl on CUDA and gloo on
the CPU. Without those variables the run is a single process and nothing here talks to a network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archdsl.errors import UsageError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Context:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # joined here, so left here (a caller's own process group stays up)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run folder and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str) -> Context:
    """Pick the device (``auto``: CUDA when there is one) and join torchrun's process group if any."""
    import torch
    import torch.distributed as dist

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but torch sees no CUDA device here", hint="use --device cpu or auto")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context(torch.device("cuda" if use_cuda else "cpu"))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise UsageError(
                f"rank {rank} wants GPU {local_rank}, but this machine has {torch.cuda.device_count()}",
                hint="start at most one process per GPU (torchrun --nproc_per_node)",
            )
        torch.cuda.set_device(local_rank)
        target = torch.device("cuda", local_rank)
    else:
        target = torch.device("cpu")
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                device_id=target if use_cuda else None)
    return Context(target, rank, world_size, owns_group)


def teardown(context: Context) -> None:
    import torch.distributed as dist

    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(context: Context, values: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of a small tensor (the epoch's loss and accuracy counters)."""
    if context.distributed:
        import torch.distributed as dist

        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(context: Context) -> None:
    if context.distributed:
        import torch.distributed as dist

        dist.barrier()


def on_main(context: Context, action: Callable[[], None]) -> None:
    """Run ``action`` on rank 0 alone (taking the run folder, writing it) and raise its refusal on every rank.

    Under torchrun a rank that ends takes the job with it; ranks started by hand (RANK, WORLD_SIZE set) would
    instead wait at their next collective for a rank 0 that has gone, and end in the backend's traceback. So
    rank 0 broadcasts the outcome: a one-element tensor with the length of the refusal's text (0: it went
    well), then the text itself as bytes (JSON, never a pickle), and every rank raises the same UsageError.
    """
    if not context.distributed:
        action()
        return
    import torch
    import torch.distributed as dist

    failure: BaseException | None = None
    payload = b""
    if context.is_main:
        try:
            action()
        except BaseException as err:  # noqa: BLE001 - told to the other ranks, then raised again here
            failure = err
            payload = _refusal(err).encode("utf-8")
    size = torch.tensor([len(payload)], dtype=torch.int64, device=context.device)
    dist.broadcast(size, src=0)
    if size.item() == 0:
        return
    data = (torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(context.device) if context.is_main
            else torch.empty(int(size.item()), dtype=torch.uint8, device=context.device))
    dist.broadcast(data, src=0)
    if failure is not None:
        raise failure
    told = json.loads(data.cpu().numpy().tobytes().decode("utf-8"))
    raise UsageError(told["message"], hint=told["hint"], file=told["file"])


def _refusal(err: BaseException) -> str:
    """What the other ranks raise for rank 0's ``err``: the same message, or (for a failure that is not the
    user's) that rank 0 stopped."""
    from archdsl.errors import ArchError, first_line

    if isinstance(err, ArchError):
        return json.dumps({"message": err.message, "hint": err.hint, "file": err.file})
    reason = first_line(err) if isinstance(err, Exception) else type(err).__name__
    return json.dumps({"message": f"process 0 stopped before training: {reason}", "hint": None, "file": None})
