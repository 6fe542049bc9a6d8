"""The audit across processes: ``torchrun --nproc_per_node P -m relink audit --distributed ...``.

The process group is ``torch.distributed`` (gloo on the CPU, nccl on GPUs),
joined and carried as ``relink embed --distributed`` does
(:mod:`relink.embed.distributed`: ``init_process_group``, ``TorchComm``,
``sync``; the launch is checked and the other ranks awaited for at most
``--timeout`` seconds before the group is joined), through the audit:

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
(:func:`relink.embed.distributed.sync`), so no rank waits for the others forever.
"""

from __future__ import annotations


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
