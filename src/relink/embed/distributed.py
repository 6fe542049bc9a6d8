"""The ``torch.distributed`` process group that ``relink embed --distributed`` runs in.

    torchrun --nproc_per_node 2 -m relink embed --distributed --cohort C --model M --out DIR

Rank ``r`` of ``W`` embeds shards ``r, r+W, r+2W, ...`` into the shared work
folder; after a barrier rank 0 merges all shards in row order. The result is
the same as a one-process run with the same shard and batch sizes
(byte-identical on the CPU), and any process count can resume any work folder.
The process group uses gloo on the CPU and nccl on GPUs; an error on one rank
(an unreadable image, say) stops every rank with that rank's message.

This module joins the group (:func:`init_process_group`), carries it
(:class:`TorchComm`) and meets the other ranks with errors (:func:`sync`);
``relink audit --distributed`` uses the same three. The command line lives
in :mod:`relink.commands.embed`.
"""

from __future__ import annotations

import datetime
import os

from ..errors import RelinkError


class TorchComm:
    """The :class:`relink.embed.run.Comm` of an initialised ``torch.distributed`` group: rank, size, a
    barrier, a sum of integer arrays, error gathering."""

    def __init__(self):
        import torch
        import torch.distributed as dist

        self.dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        # nccl moves tensors that live on the rank's GPU (its current device); gloo, CPU tensors
        nccl = dist.get_backend() == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")

    def barrier(self) -> None:
        self.dist.barrier()

    def all_reduce_sum(self, a):
        """The element-wise sum of every rank's integer array ``a`` (int64), returned on every rank."""
        import numpy as np
        import torch

        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.SUM)
        return t.cpu().numpy()

    def gather_errors(self, error: tuple[str, bool] | None) -> list[tuple[str, bool]]:
        """Every rank's ``(message, is_bad_input)`` (``None``: no failure), messages prefixed with the rank."""
        gathered: list[tuple[str, bool] | None] = [None] * self.world_size
        self.dist.all_gather_object(gathered, error)
        return [(f"rank {r}: {e[0]}", bool(e[1])) for r, e in enumerate(gathered) if e]


class OtherRankFailed(RelinkError):
    """Another rank failed for a reason other than bad input (its finished work is kept for a re-run)."""


def sync(comm, failure: BaseException | None) -> None:
    """Meet the other ranks; raise this rank's failure, or the first other rank's (``comm`` None: just raise).

    An error on one rank reaches every rank here, so no rank waits for the others forever.
    """
    mine = None if failure is None else (str(failure) or failure.__class__.__name__, isinstance(failure, RelinkError))
    errors = comm.gather_errors(mine) if comm is not None else []
    if failure is not None:
        raise failure
    if errors:
        msg, bad_input = errors[0]
        raise (RelinkError if bad_input else OtherRankFailed)(msg)


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
