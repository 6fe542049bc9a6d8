"""Blocked score products -> threshold counts, both directions from one product.

Contract. ``x`` and ``y`` are float32 torch tensors of shape (n, d) on one
device; row i of ``x`` (an image) is paired with row i of ``y`` (its report).
The score matrix is ``S = x @ y.T``. It is never held whole: rows are taken in
blocks of ``block_rows`` and each block's product is formed in column tiles of
``tile_cols`` inside one preallocated buffer (memory: one tile of floats and
two of booleans per threshold). A tile stays in cache while it is compared.

For every row threshold ``row_thr[:, k]`` the kernel counts, for each row i::

    above[i]   = #{j : S[i, j] >  row_thr[i, k] + tie_tol}
    atleast[i] = #{j : S[i, j] >= row_thr[i, k] - tie_tol}

(so the tie band is ``atleast - above``), and for every column threshold
``col_thr[:, k]`` the same per column j over the rows i: the report->image
direction reads the same product column-wise. Threshold k > 0 is evaluated
only where ``row_active[:, k]`` (``col_active``) is true; elsewhere its counts
are left 0 for the caller to fill (the patient-level threshold equals the
study one for most queries, and then it needs no comparisons of its own).

Each count is made over all candidates and, for every *segmentation*, over
the candidates in the row's own group. A segmentation is given by ``edges``
(increasing, ``edges[0] == 0``, ``edges[-1] == n``): group g holds rows and
columns ``edges[g]:edges[g+1]``. Rows and columns are ordered alike, so the
in-group cells are squares on the diagonal and come from slices of the tiles
already compared: hard negatives cost some sums, not another product.

The diagonal ``S[i, i]`` is overwritten with ``diag[i]`` before comparing, so
a caller whose thresholds are the diagonal knows each query's own candidate
sits exactly at its threshold (in the band, never above).

Speed (CPU). Comparisons run in numpy on views of the torch buffers (its
``greater`` is about twice torch's), the row and the column direction in two
threads, and a boolean mask is counted 8 bytes at a time as int64 words: each
byte lane of a sum of at most 255 words cannot overflow into the next, so
tiles are at most 2040 columns wide and column sums go 255 rows at a time.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

_LANES = 255  # most words (columns / 8) or rows one packed sum may cover


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
        return 4096, 32768
    return 2 * _LANES, 8 * _LANES


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


class _Ops:
    """The few array operations the tile loop needs, for numpy (CPU) or torch (GPU)."""

    def __init__(self, device, engine: str = "auto"):
        import torch

        self.torch = torch
        self.numpy = device.type == "cpu" if engine == "auto" else engine == "numpy"
        self.packed = self.numpy
        self.device = device
        self.i64 = np.int64 if self.numpy else torch.int64
        self.u8 = np.uint8 if self.numpy else torch.uint8

    def host(self, t):
        return t.numpy() if self.numpy else t

    def zeros(self, shape, dtype=None):
        if self.numpy:
            return np.zeros(shape, dtype=dtype or np.int64)
        return self.torch.zeros(shape, dtype=dtype or self.torch.int64, device=self.device)

    def gt(self, a, b, out):
        np.greater(a, b, out=out) if self.numpy else self.torch.gt(a, b, out=out)

    def index(self, idx):
        return idx if self.numpy else self.torch.as_tensor(idx, device=self.device)

    def row_sum(self, mask, a: int, b: int):
        """Ones in mask[..., a:b] per leading index (int64); mask is uint8."""
        if not self.packed:
            return mask[..., a:b].sum(-1, dtype=self.i64)
        a8, b8 = a // 8, -(-b // 8)
        words = mask.view(self.i64)[..., a8:b8]
        total = words.sum(-1).view(self.u8).reshape(*words.shape[:-1], 8).sum(-1, dtype=self.i64)
        if 8 * a8 < a:
            total -= mask[..., 8 * a8:a].sum(-1, dtype=self.i64)
        if b < 8 * b8:
            total -= mask[..., b:8 * b8].sum(-1, dtype=self.i64)
        return total

    def col_sum(self, mask, ra: int, rb: int, u: int, v: int):
        """Ones in mask[:, ra:rb, u:v] per (leading, column) (int64); mask (L, h, w) uint8."""
        if not self.packed:
            return mask[:, ra:rb, u:v].sum(1, dtype=self.i64)
        u8, v8 = u // 8, -(-v // 8)
        words = mask.view(self.i64)[:, :, u8:v8]
        total = 0
        for c in range(ra, rb, _LANES):
            total = total + words[:, c:min(rb, c + _LANES)].sum(1).view(self.u8).astype(np.int64)
        return total[:, u - 8 * u8:v - 8 * u8]


def _stacked(thr, tie_tol: float, rows: int) -> np.ndarray:
    """(rows, K, 2) float32: [..., 0] = thr + tol (above), [..., 1] = the float below thr - tol (at least)."""
    thr = np.asarray(thr, dtype=np.float32)
    out = np.zeros((rows, thr.shape[1], 2), dtype=np.float32)
    out[: len(thr), :, 0] = thr + np.float32(tie_tol)
    out[: len(thr), :, 1] = np.nextafter(thr - np.float32(tie_tol), np.float32(-np.inf))
    return out


def threshold_counts(
    x,
    y,
    diag,
    row_thr: np.ndarray,
    col_thr: np.ndarray,
    row_active: np.ndarray | None = None,
    col_active: np.ndarray | None = None,
    segmentations: Sequence[np.ndarray] = (),
    tie_tol: float = 1e-6,
    block_rows: int | None = None,
    tile_cols: int | None = None,
    progress: bool = False,
    engine: str = "auto",
    group_cells: int | None = None,
) -> ThresholdCounts:
    """Count candidates above / at least each threshold, per row and per column.

    ``diag`` is an (n,) float32 tensor on the device of ``x``; ``row_thr``
    (n, R) and ``col_thr`` (n, C) float32 arrays, R or C possibly 0 (that
    direction is skipped); ``row_active``/``col_active`` (n, R)/(n, C) bools.
    ``engine``: ``"numpy"`` (CPU default) or ``"torch"`` (GPU default; on a
    CPU only for testing that path). ``group_cells`` caps the scores one
    product writes (block rows x group columns; 2**24 on a CPU, 2**28 on a GPU).
    """
    import torch
    from tqdm.auto import tqdm

    n = x.shape[0]
    ops = _Ops(x.device, engine)
    br, tc = default_blocks(x.device)
    br = max(1, min(block_rows or br, n))
    tc = max(1, min(tile_cols or tc, n))
    if ops.packed:
        tc = max(8, min(tc, 8 * _LANES) // 8 * 8)
    n_seg = 1 + len(segmentations)
    n_row, n_col = row_thr.shape[1], col_thr.shape[1]
    pad = -(-n // 8) * 8 + 8
    row_t = ops.host(torch.as_tensor(_stacked(row_thr, tie_tol, pad), device=x.device))
    col_stacked = _stacked(col_thr, tie_tol, pad)
    row_on = np.ones((n, n_row), bool) if row_active is None else np.asarray(row_active, bool).copy()
    col_on = np.ones((n, n_col), bool) if col_active is None else np.asarray(col_active, bool).copy()
    row_on[:, :1] = True
    col_on[:, :1] = True
    col_stacked[: n][~col_on] = np.inf  # an inactive column threshold never counts
    col_flat = ops.host(torch.as_tensor(col_stacked, device=x.device))
    acc_row = ops.zeros((n_row, n_seg, n, 2))
    acc_col = ops.zeros((n_col, n_seg, n, 2))
    w_max = -(-tc // 8) * 8
    # One product per row block and column group (as wide as memory allows), compared tile by tile.
    cells = group_cells or (1 << 24 if x.device.type == "cpu" else 1 << 28)
    gw = min(-(-n // tc) * tc, max(tc, (cells // br) // tc * tc))
    flat = torch.empty(br * (-(-gw // 8) * 8), dtype=torch.float32, device=x.device)
    row_buf = ops.host(torch.empty(2 * br * w_max, dtype=torch.bool, device=x.device))
    col_buf = ops.host(torch.empty(2 * max(1, n_col) * br * w_max, dtype=torch.bool, device=x.device))
    edges = [np.asarray(e, dtype=np.int64) for e in segmentations]
    neg_inf = float("-inf")
    col_chunk = 128 if ops.numpy else br

    def tiles(g0, g1):
        for c0 in range(g0, g1, tc):
            c1 = min(g1, c0 + tc)
            yield c0, c1 - c0, (-(-(c1 - c0) // 8) * 8 if ops.packed else c1 - c0)

    def rows_task(G, r0, h, g0, g1):
        for c0, w, w8 in tiles(g0, g1):
            S = G[:, c0 - g0:c0 - g0 + w8]
            slices = [_tile_slices(e, r0, r0 + h, c0, c0 + w) for e in edges]
            for k in range(n_row):
                on = row_on[r0:r0 + h, k]
                if not on.any():
                    continue
                sel = None if on.all() else np.flatnonzero(on)
                sub = S if sel is None else S[ops.index(sel)]
                thr = row_t[r0:r0 + h, k] if sel is None else row_t[ops.index(r0 + sel), k]
                p = sub.shape[0]
                mask = row_buf[: p * 2 * w8].reshape(p, 2, w8)
                ops.gt(sub[:, None, :], thr[:, :, None], out=mask)
                m8 = mask.view(ops.u8)
                where = slice(r0, r0 + h) if sel is None else ops.index(r0 + sel)
                acc_row[k, 0, where] += ops.row_sum(m8, 0, w8)
                for s, sl in enumerate(slices, start=1):
                    for ra, rb, ca, cb in sl:
                        u, v = (ra - r0, rb - r0) if sel is None else np.searchsorted(sel, (ra - r0, rb - r0))
                        if u < v:
                            at = slice(r0 + u, r0 + v) if sel is None else ops.index(r0 + sel[u:v])
                            acc_row[k, s, at] += ops.row_sum(m8[u:v], ca - c0, cb - c0)

    def cols_task(G, r0, h, g0, g1):
        # All column thresholds in one comparison (+inf where inactive), over row chunks that
        # stay in cache; each chunk is at most _LANES rows, the limit of one packed column sum.
        for c0, w, w8 in tiles(g0, g1):
            slices = [_tile_slices(e, r0, r0 + h, c0, c0 + w) for e in edges]
            ks = [k for k in range(n_col) if k == 0 or col_on[c0:c0 + w, k].any()]
            thr = col_flat[c0:c0 + w8, ks].reshape(w8, -1).T[:, None, :]
            for q0 in range(r0, r0 + h, col_chunk):
                q1 = min(r0 + h, q0 + col_chunk)
                S = G[q0 - r0:q1 - r0, c0 - g0:c0 - g0 + w8]
                mask = col_buf[: 2 * len(ks) * (q1 - q0) * w8].reshape(2 * len(ks), q1 - q0, w8)
                ops.gt(S[None, :, :], thr, out=mask)
                m8 = mask.view(ops.u8)
                counts = ops.col_sum(m8, 0, q1 - q0, 0, w).reshape(len(ks), 2, w)
                for j, k in enumerate(ks):
                    acc_col[k, 0, c0:c0 + w] += counts[j].T
                for s, sl in enumerate(slices, start=1):
                    for ra, rb, ca, cb in sl:
                        ra, rb = max(ra, q0), min(rb, q1)
                        if ra < rb:
                            part = ops.col_sum(m8, ra - q0, rb - q0, ca - c0, cb - c0).reshape(len(ks), 2, cb - ca)
                            for j, k in enumerate(ks):
                                acc_col[k, s, ca:cb] += part[j].T

    pool = ThreadPoolExecutor(max_workers=2) if ops.numpy and n_row and n_col else None
    try:
        for r0 in tqdm(range(0, n, br), desc="score blocks", unit="block", disable=None if progress else True):
            r1 = min(n, r0 + br)
            h = r1 - r0
            xb = x[r0:r1]
            for g0 in range(0, n, gw):
                g1 = min(n, g0 + gw)
                width = -(-(g1 - g0) // 8) * 8 if ops.packed else g1 - g0
                G = flat[: h * width].view(h, width)
                if width == g1 - g0:
                    torch.mm(xb, y[g0:g1].T, out=G)
                else:  # a ragged last group: pad columns can never count
                    G[:, : g1 - g0] = xb @ y[g0:g1].T
                    G[:, g1 - g0:] = neg_inf
                lo, hi = max(r0, g0), min(r1, g1)
                if lo < hi:
                    idx = torch.arange(lo, hi, device=x.device)
                    G[idx - r0, idx - g0] = diag[lo:hi]
                args = (ops.host(G), r0, h, g0, g1)
                if pool is not None:
                    futures = [pool.submit(rows_task, *args), pool.submit(cols_task, *args)]
                    for f in futures:
                        f.result()
                else:
                    rows_task(*args)
                    cols_task(*args)
    finally:
        if pool is not None:
            pool.shutdown()
    rows = acc_row if ops.numpy else acc_row.cpu().numpy()
    cols = acc_col if ops.numpy else acc_col.cpu().numpy()
    return ThresholdCounts(rows[..., 0], rows[..., 1], cols[..., 0], cols[..., 1])
