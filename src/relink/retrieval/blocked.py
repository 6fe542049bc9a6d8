"""Blocked score products -> threshold counts, both directions from one product.

Contract. ``x`` and ``y`` are float32 torch tensors of shape (n, d) on one
device; row i of ``x`` (an image) is paired with row i of ``y`` (its report).
The score matrix is ``S = x @ y.T``. It is never held whole: rows are taken in
blocks of ``block_rows`` and each block's product is formed in column tiles of
``tile_cols`` inside one preallocated buffer (memory: one tile of floats and
two of booleans per threshold). A tile stays in cache while it is compared.

For every row threshold ``row_thr[:, k]`` the kernel counts, for each row i::

    above[i] = #{j : S[i, j] > row_thr[i, k] + tie_tol}

and for every column threshold ``col_thr[:, k]`` the same per column j over
the rows i: the report->image direction reads the same product column-wise.
Threshold k > 0 is evaluated only where ``row_active[:, k]``
(``col_active``) is true; elsewhere its counts are left 0 for the caller to
fill (the patient-level threshold equals the study one for most queries, and
then it needs no comparisons of its own).

Each count is made over all candidates and, for every *segmentation*, over
the candidates in the row's own group. A segmentation is given by ``edges``
(increasing, ``edges[0] == 0``, ``edges[-1] == n``): group g holds rows and
columns ``edges[g]:edges[g+1]``. Rows and columns are ordered alike, so the
in-group cells are squares on the diagonal and come from slices of the tiles
already compared: hard negatives cost some sums, not another product.

The diagonal ``S[i, i]`` is overwritten with ``diag[i]`` before comparing, so
a caller whose thresholds are the diagonal knows each query's own candidate
is never counted.

Speed (CPU). Each worker thread (as many as torch has) takes whole row
blocks and runs single-threaded products and comparisons on them; torch's own
threads are set to one meanwhile, because after every product they spin and
would take the cores from the counting. Comparisons run in numpy on views of
the torch buffers (its ``greater`` is about twice torch's), over tiles and row
slabs small enough to stay in cache, and a boolean mask is counted 8 bytes at
a time as int64 words: each byte lane of a sum of at most 255 words cannot
overflow into the next, so tiles are at most 2040 columns wide and column
sums go at most 255 rows at a time.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from contextlib import contextmanager
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
    col_above: np.ndarray


def default_blocks(device) -> tuple[int, int]:
    """(block_rows, tile_cols): cache-sized tiles on a CPU, large ones on a GPU."""
    if getattr(device, "type", str(device)) == "cuda":
        return 4096, 32768
    return 2 * _LANES, 8 * _LANES


def _tile_slices(edges: list[int], r0: int, r1: int, c0: int, c1: int) -> list[tuple[int, int, int, int]]:
    """Intersections of the diagonal group squares with the tile [r0, r1) x [c0, c1).

    Group g = [a, b) meets the tile iff a < min(r1, c1) and b > max(r0, c0);
    groups are sorted, so those form one run of group indices.
    """
    lo, hi = max(r0, c0), min(r1, c1)
    out = []
    for g in range(bisect_right(edges, lo) - 1, bisect_right(edges, hi - 1)):
        a, b = edges[g], edges[g + 1]
        ra, rb, ca, cb = max(a, r0), min(b, r1), max(a, c0), min(b, c1)
        if ra < rb and ca < cb:
            out.append((ra, rb, ca, cb))
    return out


@contextmanager
def torch_threads(k: int):
    """Run with torch's intra-op threads set to ``k``, restored afterwards.

    On a busy CPU torch's idle threads spin after each operation; numpy work
    that follows a small torch product runs faster with them switched off.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(k)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


def _shifted(thr, tie_tol: float, rows: int, active: np.ndarray | None) -> np.ndarray:
    """(rows, K) float32 thresholds + tie_tol; +inf where inactive and in the padding rows."""
    thr = np.asarray(thr, dtype=np.float32)
    out = np.full((rows, thr.shape[1]), np.inf, dtype=np.float32)
    out[: len(thr)] = thr + np.float32(tie_tol)
    if active is not None:
        out[: len(thr)][~active] = np.inf
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
    """Count candidates above each threshold (plus ``tie_tol``), per row and per column.

    ``diag`` is an (n,) float32 tensor on the device of ``x``; ``row_thr``
    (n, R) and ``col_thr`` (n, C) float32 arrays, R or C possibly 0 (that
    direction is skipped); ``row_active``/``col_active`` (n, R)/(n, C) bools.
    ``engine``: ``"numpy"`` (CPU default) or ``"torch"`` (GPU default; on a
    CPU only for testing that path). ``group_cells`` caps the scores one
    product writes (block rows x group columns; 2**20 on a CPU, 2**28 on a GPU).
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
    row_on = np.ones((n, n_row), bool) if row_active is None else np.asarray(row_active, bool).copy()
    col_on = np.ones((n, n_col), bool) if col_active is None else np.asarray(col_active, bool).copy()
    row_on[:, :1] = True
    col_on[:, :1] = True
    pad = -(-n // 8) * 8 + 8
    row_t = ops.host(torch.as_tensor(_shifted(row_thr, tie_tol, pad, None), device=x.device))
    col_t = ops.host(torch.as_tensor(_shifted(col_thr, tie_tol, pad, col_on), device=x.device))
    acc_row = ops.zeros((n_row, n_seg, n))  # each row block writes its own rows
    w_max = -(-tc // 8) * 8
    cells = group_cells or (1 << 20 if x.device.type == "cpu" else 1 << 28)
    gw = min(-(-n // tc) * tc, max(tc, (cells // br) // tc * tc))  # columns one product writes
    edges = [[int(v) for v in e] for e in segmentations]
    neg_inf = float("-inf")
    chunk = 128 if ops.numpy else br  # rows compared at once: a cache-sized slab, <= _LANES
    local = threading.local()
    col_accs = []
    lock = threading.Lock()

    def own():
        """This worker's buffers and column accumulator (made on first use)."""
        if not hasattr(local, "flat"):
            local.flat = torch.empty(br * (-(-gw // 8) * 8), dtype=torch.float32, device=x.device)
            local.row_buf = ops.host(torch.empty(br * w_max, dtype=torch.bool, device=x.device))
            local.col_buf = ops.host(torch.empty(max(1, n_col) * chunk * w_max, dtype=torch.bool, device=x.device))
            local.acc_col = ops.zeros((n_col, n_seg, n))
            with lock:
                col_accs.append(local.acc_col)
        return local

    def tiles(g0, g1):
        for c0 in range(g0, g1, tc):
            c1 = min(g1, c0 + tc)
            yield c0, c1 - c0, (-(-(c1 - c0) // 8) * 8 if ops.packed else c1 - c0)

    def count_block(G, r0, r1, g0, g1, mine):
        """Counts from the product G of rows [r0, r1) and columns [g0, g1), into acc_row (these
        rows only) and this worker's own column accumulator."""
        for c0, w, w8 in tiles(g0, g1):
            slices = [_tile_slices(e, r0, r1, c0, c0 + w) for e in edges]
            S = G[:, c0 - g0:c0 - g0 + w8]
            for k in range(n_row):
                on = row_on[r0:r1, k]
                if not on.any():
                    continue
                sel = None if on.all() else np.flatnonzero(on)
                sub = S if sel is None else S[ops.index(sel)]
                thr = row_t[r0:r1, k] if sel is None else row_t[ops.index(r0 + sel), k]
                mask = mine.row_buf[: sub.shape[0] * w8].reshape(sub.shape[0], w8)
                ops.gt(sub, thr[:, None], out=mask)
                m8 = mask.view(ops.u8)
                acc_row[k, 0, slice(r0, r1) if sel is None else ops.index(r0 + sel)] += ops.row_sum(m8, 0, w8)
                for s, sl in enumerate(slices, start=1):
                    for ra, rb, ca, cb in sl:
                        u, v = (ra - r0, rb - r0) if sel is None else np.searchsorted(sel, (ra - r0, rb - r0))
                        if u < v:
                            at = slice(r0 + u, r0 + v) if sel is None else ops.index(r0 + sel[u:v])
                            acc_row[k, s, at] += ops.row_sum(m8[u:v], ca - c0, cb - c0)
            if not n_col:
                continue
            # All column thresholds in one comparison (+inf where inactive), a slab of rows at a time.
            ks = [k for k in range(n_col) if k == 0 or col_on[c0:c0 + w, k].any()]
            thr = col_t[c0:c0 + w8, ks].T[:, None, :]
            for p0 in range(r0, r1, chunk):
                p1 = min(r1, p0 + chunk)
                mask = mine.col_buf[: len(ks) * (p1 - p0) * w8].reshape(len(ks), p1 - p0, w8)
                ops.gt(S[None, p0 - r0:p1 - r0, :], thr, out=mask)
                m8 = mask.view(ops.u8)
                counts = ops.col_sum(m8, 0, p1 - p0, 0, w)
                for j, k in enumerate(ks):
                    mine.acc_col[k, 0, c0:c0 + w] += counts[j]
                for s, sl in enumerate(slices, start=1):
                    for ra, rb, ca, cb in sl:
                        ra, rb = max(ra, p0), min(rb, p1)
                        if ra < rb:
                            part = ops.col_sum(m8, ra - p0, rb - p0, ca - c0, cb - c0)
                            for j, k in enumerate(ks):
                                mine.acc_col[k, s, ca:cb] += part[j]

    def block(r0):
        """Products and counts of rows [r0, r0 + br), column group by column group."""
        mine = own()
        r1 = min(n, r0 + br)
        h = r1 - r0
        xb = x[r0:r1]
        for g0 in range(0, n, gw):
            g1 = min(n, g0 + gw)
            width = -(-(g1 - g0) // 8) * 8 if ops.packed else g1 - g0
            G = mine.flat[: h * width].view(h, width)
            if width == g1 - g0:
                torch.mm(xb, y[g0:g1].T, out=G)
            else:  # a ragged last group: pad columns can never count
                G[:, : g1 - g0] = xb @ y[g0:g1].T
                G[:, g1 - g0:] = neg_inf
            lo, hi = max(r0, g0), min(r1, g1)
            if lo < hi:
                idx = torch.arange(lo, hi, device=x.device)
                G[idx - r0, idx - g0] = diag[lo:hi]
            count_block(ops.host(G), r0, r1, g0, g1, mine)

    # On a CPU each worker thread runs its own single-threaded products and counts: torch's
    # threads would otherwise spin after every product and take the cores from the counting.
    workers = torch.get_num_threads() if ops.numpy else 1
    starts = range(0, n, br)
    bar = dict(total=len(starts), desc="score blocks", unit="block", disable=None if progress else True)
    if workers > 1:
        with torch_threads(1), ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in tqdm(pool.map(block, starts), **bar):
                pass
    else:
        for r0 in tqdm(starts, **bar):
            block(r0)
    acc_col = col_accs[0]
    for extra in col_accs[1:]:
        acc_col = acc_col + extra
    rows = acc_row if ops.numpy else acc_row.cpu().numpy()
    cols = acc_col if ops.numpy else acc_col.cpu().numpy()
    return ThresholdCounts(rows, cols)
