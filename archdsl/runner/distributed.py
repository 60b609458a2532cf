"""Where a run executes: the device, and under torchrun the process group and this process's rank.

``torchrun --nproc_per_node N archdsl train ...`` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; the same command then trains with DistributedDataParallel, nccl on CUDA and gloo on
the CPU. Without those variables the run is a single process and nothing here talks to a network.
"""

from __future__ import annotations

import os
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
