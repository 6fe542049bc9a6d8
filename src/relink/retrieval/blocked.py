"""Blocked score products -> threshold counts, both directions from one product.

Contract. ``x`` and ``y`` are float32 torch tensors of shape (n, d) on one
device; row i of ``x`` (an image) is paired with row i of ``y`` (its report).
The score matrix is ``S = x @ y.T``. It is never held whole: rows are taken in
blocks of ``block_rows`` and each block's product is formed in column tiles of
``tile_cols`` inside one preallocated buffer, so the working memory is
``block_rows * tile_cols`` floats plus one boolean mask of the same shape. The
tile is small enough to stay in cache while it is compared several times,
which is what keeps the counting cheap next to the product itself.

For every row threshold ``row_thr[:, k]`` the kernel counts, for each row i::

    above[i] = #{j : S[i, j] >  row_thr[i, k] + tie_tol}
    atleast[i] = #{j : S[i, j] >= row_thr[i, k] - tie_tol}

(so the tie band is ``atleast - above``), and for every column threshold
``col_thr[:, k]`` the same per column j over the rows i (the report->image
direction reads the product column-wise: one product serves both directions).

Each count is made over all candidates and, for every *segmentation*, over
the candidates in the row's own group only. A segmentation is given by
``edges`` (increasing, ``edges[0] == 0``, ``edges[-1] == n``): group g holds
rows and columns ``edges[g]:edges[g+1]``. Rows and columns are ordered alike,
so the in-group cells are squares on the diagonal and come from slices of the
tiles already computed: hard negatives cost a few extra sums, not a product.

The diagonal ``S[i, i]`` is overwritten with ``diag[i]`` before comparing, so
a caller whose thresholds are the diagonal knows each query's own candidate
sits exactly at its threshold (in the band, never above).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class ThresholdCounts:
    """int64 arrays of shape (thresholds, 1 + segmentations, n).

    Index 0 on the middle axis counts over all candidates; index s + 1 over the
    candidates in the same group of segmentation s.
    """

    row_above: np.ndarray
    row_atleast: np.ndarray
    col_above: np.ndarray
    col_atleast: np.ndarray


def default_blocks(device) -> tuple[int, int]:
    """(block_rows, tile_cols): cache-sized tiles on a CPU, large ones on a GPU."""
    if getattr(device, "type", str(device)) == "cuda":
        return 4096, 65536
    return 512, 2048


def _tile_slices(edges: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> list[tuple[int, int, int, int]]:
    """Intersections of the diagonal group squares with the tile [r0, r1) x [c0, c1).

    Group g = [a, b) meets the tile iff a < min(r1, c1) and b > max(r0, c0);
    groups are sorted, so those form one run of group indices.
    """
    lo, hi = max(r0, c0), min(r1, c1)
    g_first = int(np.searchsorted(edges, lo, side="right")) - 1
    g_last = int(np.searchsorted(edges, hi - 1, side="right")) - 1
    out = []
    for g in range(g_first, g_last + 1):
        a, b = int(edges[g]), int(edges[g + 1])
        ra, rb, ca, cb = max(a, r0), min(b, r1), max(a, c0), min(b, c1)
        if ra < rb and ca < cb:
            out.append((ra, rb, ca, cb))
    return out


def threshold_counts(
    x,
    y,
    diag,
    row_thr,
    col_thr,
    segmentations: Sequence[np.ndarray] = (),
    tie_tol: float = 1e-6,
    block_rows: int | None = None,
    tile_cols: int | None = None,
    progress: bool = False,
) -> ThresholdCounts:
    """Count candidates above / at least each threshold, per row and per column.

    ``diag`` (n,), ``row_thr`` (n, R) and ``col_thr`` (n, C) are float32
    tensors on the device of ``x``; R or C may be 0 (that direction is skipped).
    """
    import torch
    from tqdm.auto import tqdm

    n = x.shape[0]
    device = x.device
    br, tc = default_blocks(device)
    br, tc = min(block_rows or br, n), min(tile_cols or tc, n)
    n_seg = 1 + len(segmentations)
    n_row, n_col = row_thr.shape[1], col_thr.shape[1]
    counts = {name: torch.zeros((k, n_seg, n), dtype=torch.int32, device=device)
              for name, k in (("row_above", n_row), ("row_atleast", n_row),
                              ("col_above", n_col), ("col_atleast", n_col))}
    tol = float(tie_tol)
    row_hi, row_lo = (row_thr + tol).T.contiguous(), (row_thr - tol).T.contiguous()
    col_hi, col_lo = (col_thr + tol).T.contiguous(), (col_thr - tol).T.contiguous()
    flat_scores = torch.empty(br * tc, dtype=torch.float32, device=device)
    flat_mask = torch.empty(br * tc, dtype=torch.bool, device=device)
    edges = [np.asarray(e, dtype=np.int64) for e in segmentations]

    for r0 in tqdm(range(0, n, br), desc="score blocks", unit="block", disable=None if progress else True):
        r1 = min(n, r0 + br)
        xb = x[r0:r1]
        for c0 in range(0, n, tc):
            c1 = min(n, c0 + tc)
            h, w = r1 - r0, c1 - c0
            scores = flat_scores[: h * w].view(h, w)
            mask = flat_mask[: h * w].view(h, w)
            torch.mm(xb, y[c0:c1].T, out=scores)
            lo, hi = max(r0, c0), min(r1, c1)
            if lo < hi:
                idx = torch.arange(lo, hi, device=device)
                scores[idx - r0, idx - c0] = diag[lo:hi]
            slices = [_tile_slices(e, r0, r1, c0, c1) for e in edges]
            byte = mask.view(torch.uint8)
            for k in range(n_row):
                for op, thr, out in ((torch.gt, row_hi, counts["row_above"]), (torch.ge, row_lo, counts["row_atleast"])):
                    op(scores, thr[k, r0:r1, None], out=mask)
                    out[k, 0, r0:r1] += byte.sum(1, dtype=torch.int32)
                    for s, sl in enumerate(slices, start=1):
                        for ra, rb, ca, cb in sl:
                            out[k, s, ra:rb] += byte[ra - r0:rb - r0, ca - c0:cb - c0].sum(1, dtype=torch.int32)
            for k in range(n_col):
                for op, thr, out in ((torch.gt, col_hi, counts["col_above"]), (torch.ge, col_lo, counts["col_atleast"])):
                    op(scores, thr[k, None, c0:c1], out=mask)
                    out[k, 0, c0:c1] += byte.sum(0, dtype=torch.int32)
                    for s, sl in enumerate(slices, start=1):
                        for ra, rb, ca, cb in sl:
                            out[k, s, ca:cb] += byte[ra - r0:rb - r0, ca - c0:cb - c0].sum(0, dtype=torch.int32)
    return ThresholdCounts(**{k: v.cpu().numpy().astype(np.int64) for k, v in counts.items()})
