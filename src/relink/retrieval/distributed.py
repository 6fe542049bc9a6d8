"""The audit across processes: ``torchrun --nproc_per_node P -m relink audit --distributed ...``.

The process group is ``torch.distributed`` (gloo on the CPU, nccl on GPUs),
joined as ``relink embed --distributed`` joins it
(:func:`relink.embed.distributed.init_process_group`). :class:`TorchComm`
carries it through the audit:

* the product pass splits the *query rows* across ranks: rank r takes the
  r-th of P nearly equal runs of row slabs and streams every candidate block
  for them (:func:`relink.retrieval.passes.count_pass`);
* both directions still come from one product per tile. A rank's tiles
  give the complete image->report counts of its own rows, and, read
  column-wise, each report's report->image counts over the images of its
  rows only: a partial count. Counts are integers, so the partial column
  counts of all ranks add up to the one-process counts exactly; one
  all-reduce (sum) of the count vectors (thresholds x segmentations x n
  int64, row and column counts together) at the end replaces a second pass
  with the roles of images and reports swapped. That second pass would cost
  a whole product again; the all-reduce moves a few bytes per pair
  (``benchmarks/audit_scale.py`` prints both);
* the passes over the pairs and within patients (truth scores, identical
  rows, patient maxima; linear in the pairs) are made by every rank;
* only rank 0 summarises and writes the table.

An error on one rank reaches every rank at the next meeting point
(:func:`sync`), so no rank waits for the others forever.
"""

from __future__ import annotations

import numpy as np

from ..errors import RelinkError


class TorchComm:
    """An initialised ``torch.distributed`` group: rank, size, a sum of integer arrays, error gathering."""

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

    def all_reduce_sum(self, a: np.ndarray) -> np.ndarray:
        """The element-wise sum of every rank's ``a`` (int64), returned on every rank."""
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
    """Another rank failed for a reason other than bad input (finished blocks are kept for a re-run)."""


def sync(comm, failure: BaseException | None) -> None:
    """Meet the other ranks; raise this rank's failure, or the first other rank's (one process: just raise)."""
    mine = None if failure is None else (str(failure) or failure.__class__.__name__, isinstance(failure, RelinkError))
    errors = comm.gather_errors(mine) if comm is not None else []
    if failure is not None:
        raise failure
    if errors:
        msg, bad_input = errors[0]
        raise (RelinkError if bad_input else OtherRankFailed)(msg)


def split_rows(units: list[tuple[int, int]], world: int) -> list[list[tuple[int, int]]]:
    """``units`` (consecutive row ranges, in order) cut into ``world`` runs of nearly equal row counts."""
    total = sum(b - a for a, b in units)
    out: list[list[tuple[int, int]]] = [[] for _ in range(world)]
    done = 0
    for a, b in units:
        # the rank whose share holds this unit's first row
        r = min(world - 1, done * world // total) if total else 0
        out[r].append((a, b))
        done += b - a
    return out
