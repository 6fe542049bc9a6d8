"""The ``torch.distributed`` process group that ``relink embed --distributed`` runs in.

    torchrun --nproc_per_node 2 -m relink embed --distributed --cohort C --model M --out DIR

Rank ``r`` of ``W`` embeds shards ``r, r+W, r+2W, ...`` into the shared work
folder; after a barrier rank 0 merges all shards in row order. The result is
the same as a one-process run with the same shard and batch sizes
(byte-identical on the CPU), and any process count can resume any work folder.
The process group uses gloo on the CPU and nccl on GPUs; an error on one rank
(an unreadable image, say) stops every rank with that rank's message.

This module only joins the group (:func:`init_process_group`) and carries it
(:class:`TorchComm`); the command line lives in :mod:`relink.commands.embed`.
"""

from __future__ import annotations

import datetime
import os

from ..errors import RelinkError


class TorchComm:
    """The :class:`relink.embed.run.Comm` of an initialised ``torch.distributed`` group."""

    def __init__(self):
        import torch.distributed as dist

        self.dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def barrier(self) -> None:
        self.dist.barrier()

    def gather_errors(self, error: tuple[str, bool] | None) -> list[tuple[str, bool]]:
        gathered: list[tuple[str, bool] | None] = [None] * self.world_size
        self.dist.all_gather_object(gathered, error)
        return [(f"rank {r}: {e[0]}", bool(e[1])) for r, e in enumerate(gathered) if e]


def init_process_group(device: str = "auto") -> str:
    """Join the torchrun group; return the device this rank uses."""
    import torch
    import torch.distributed as dist

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RelinkError("--distributed needs a torchrun launch (RANK and WORLD_SIZE are not set)")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    elif device == "auto":
        device = "cpu"
    if not dist.is_initialized():
        # Rank 0 merges while the others wait at a barrier: allow a long merge of a full cohort.
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(hours=2))
    return device


def destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
