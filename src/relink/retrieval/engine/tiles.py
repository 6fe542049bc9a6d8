"""The tile counter: threshold counts of ``S = x @ y.T``, both directions from one product.

``S`` is never held whole: a :class:`TileCounter` is given the per-query
state once (thresholds, truth scores ``diag``, groups), then any number of
rectangles (a slab of rows against a block of columns, :meth:`TileCounter.add`)
in any order, from any process, each formed in tiles inside one buffer per
worker thread. Per row i and threshold k it counts
``#{j : S[i, j] > row_thr[i, k] + tie_tol}``, and the same per column for
the column thresholds. Threshold k > 0 counts only where active (elsewhere
0, for the caller to fill). Each count is made over all candidates and, per
segmentation (group g: rows and columns ``edges[g]:edges[g+1]``), within the
row's own group: in-group cells are squares on the diagonal. ``S[i, i]`` is
``diag[i]``. A rectangle starts on the tile grid (:attr:`TileCounter.row_grid`,
:attr:`TileCounter.col_grid`), so every score comes from the same product of
the same shapes whatever the rectangles.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from .backends import LANES, backend, bin_bytes, shifted

_CPU_CELLS = 1 << 20  # scores one CPU product writes (block rows x group columns): 4 MB, cache-friendly
_GPU_CELLS = 1 << 28


def default_blocks(device) -> tuple[int, int]:
    """(block_rows, tile_cols): cache-sized tiles on a CPU, large ones on a GPU."""
    if getattr(device, "type", str(device)) == "cuda":
        return 4096, 32768
    return 2 * LANES, 8 * LANES


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


class TileCounter:
    """Threshold counts of ``S = x @ y.T``, fed rectangle by rectangle (see the module docstring).

    ``diag``: (n,) float32 tensor on the device the products run on; ``rows``, ``cols``: (thresholds (n, R),
    active (n, R) bools or None) of each direction, R possibly 0 (that direction is skipped); ``edges``: one
    array of group edges per segmentation; ``grid``: thresholds to bin scores on (the threshold attacker).
    ``tiles``, ``group_cells`` and ``engine`` set the tiling and back end. ``max_cols`` is the widest column
    block :meth:`add` will be given. A context manager: the worker threads live as long as it does.
    """

    def __init__(self, n: int, diag, rows: tuple, cols: tuple, edges: Sequence[np.ndarray] = (),
                 tie_tol: float = 1e-6, grid: np.ndarray | None = None, tiles: tuple = (None, None),
                 engine: str = "auto", group_cells: int | None = None):
        import torch

        self.torch = torch
        self.n = n
        self.device = diag.device
        br, tc = default_blocks(self.device)
        self.br = br = max(1, min(tiles[0] or br, n))
        self.ops = ops = backend(self.device, engine, br)
        tc = max(1, min(tiles[1] or tc, n))
        if ops.packed:
            tc = max(8, min(tc, 8 * LANES) // 8 * 8)
        self.tc = tc
        cells = group_cells or (_CPU_CELLS if self.device.type == "cpu" else _GPU_CELLS)
        self.gw = min(-(-n // tc) * tc, max(tc, (cells // br) // tc * tc))  # columns one product writes
        self.n_seg = 1 + len(edges)
        (row_thr, row_active), (col_thr, col_active) = rows, cols
        self.n_row, self.n_col = row_thr.shape[1], col_thr.shape[1]
        self.row_on = np.ones((n, self.n_row), bool) if row_active is None else np.asarray(row_active, bool).copy()
        self.col_on = np.ones((n, self.n_col), bool) if col_active is None else np.asarray(col_active, bool).copy()
        self.row_on[:, :1] = True
        self.col_on[:, :1] = True
        pad = -(-n // 8) * 8 + 8
        self.row_t = ops.host(torch.as_tensor(shifted(row_thr, tie_tol, pad, self.row_on), device=self.device))
        self.col_t = ops.host(torch.as_tensor(shifted(col_thr, tie_tol, pad, self.col_on), device=self.device))
        self.diag = diag
        self.edges = [[int(v) for v in e] for e in edges]
        self.acc_row = ops.zeros((self.n_row, self.n_seg, n))  # each row block writes its own rows
        self.acc_col = ops.zeros((self.n_col, self.n_seg, n))
        self.max_cols = n
        # confident re-links: each row's and column's scores binned on ``grid`` (only scores >= grid[0])
        self.n_grid = 0 if grid is None else len(grid)
        if self.n_grid:
            self.grid = ops.grid(np.ascontiguousarray(grid, dtype=np.float32))
            self.hist_row = ops.zeros((n, self.n_grid), ops.int32)
            self.hist_col = ops.zeros((n, self.n_grid), ops.int32)
        self.w_max = -(-tc // 8) * 8
        self.chunk = ops.chunk
        self.workers = ops.workers
        self._local = threading.local()
        self._col_accs: list = []
        self._col_hists: list = []
        self._lock = threading.Lock()
        self._pool = None
        self._threads = None

    @property
    def row_grid(self) -> int:
        """A rectangle's first row must be a multiple of this (or 0)."""
        return self.br

    @property
    def col_grid(self) -> int:
        """A rectangle's first column must be a multiple of this (or 0)."""
        return self.gw

    def __enter__(self) -> "TileCounter":
        self._threads = self.ops.threads()
        self._threads.__enter__()
        if self.workers > 1:
            self._pool = ThreadPoolExecutor(max_workers=self.workers)
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._threads is not None:
            self._threads.__exit__(*exc)
            self._threads = None

    def row_hist(self, a: int, b: int) -> np.ndarray | None:
        """A copy of rows [a, b) of the binned scores (None without a grid)."""
        return np.array(self.ops.to_numpy(self.hist_row[a:b])) if self.n_grid else None

    def col_hist(self) -> np.ndarray | None:
        """The columns' binned scores so far (on the host; the counter's own array on a CPU: read it before
        :meth:`clear_col_hist`); None without a grid."""
        return self.ops.to_numpy(self.hist_col) if self.n_grid else None

    def clear_col_hist(self) -> None:
        """The columns' binned scores start again from zero (in place: no second (n, G) array)."""
        if self.n_grid:
            self.hist_col[...] = 0

    def row_counts(self, a: int, b: int) -> np.ndarray:
        """A copy of the row counts of rows [a, b): (thresholds, 1 + segmentations, b - a) int64."""
        return np.array(self.ops.to_numpy(self.acc_row[:, :, a:b]))

    def take_cols(self) -> np.ndarray:
        """The column counts so far, as a numpy array; the counter's column counts start again from zero."""
        cols = self.ops.to_numpy(self.acc_col)
        self.acc_col = self.ops.zeros((self.n_col, self.n_seg, self.n))
        return cols

    def buffer_bytes(self) -> int:
        """Bytes of one worker's buffers: a group of tiles of scores and the boolean masks (not its column counts,
        8 x thresholds x segmentations bytes per column of a block)."""
        masks = (max(1, self.n_row) + max(1, self.n_col)) * self.chunk * self.w_max
        binning = bin_bytes(self.br, self.gw, self.n_grid) if self.n_grid else 0  # the threshold attacker's bins
        return 4 * self.br * (-(-self.gw // 8) * 8) + masks + binning

    def _own(self):
        """This worker's buffers and column accumulator (made on first use)."""
        local, torch, dev = self._local, self.torch, self.device
        if not hasattr(local, "flat"):
            local.flat = torch.empty(self.br * (-(-self.gw // 8) * 8), dtype=torch.float32, device=dev)
            local.row_buf = self.ops.host(torch.empty(max(1, self.n_row) * self.chunk * self.w_max, dtype=torch.bool,
                                                      device=dev))
            local.col_buf = self.ops.host(torch.empty(max(1, self.n_col) * self.chunk * self.w_max, dtype=torch.bool,
                                                      device=dev))
            local.acc_col = self.ops.zeros((self.n_col, self.n_seg, self.max_cols))
            local.hist_col = self.ops.zeros((self.max_cols, self.n_grid), self.ops.int32) if self.n_grid else None
            with self._lock:
                self._col_accs.append(local.acc_col)
                if self.n_grid:
                    self._col_hists.append(local.hist_col)
        return local

    def add(self, x, r0: int, y, c0: int, progress=None) -> None:
        """Count the rectangle of rows ``x`` (global rows ``r0:r0+len(x)``) by columns ``y`` (``c0:c0+len(y)``),
        float32 tensors on the counter's device, ``r0`` and ``c0`` on the grid; ``progress``: a tqdm bar or None."""
        if r0 % self.br or c0 % self.gw:
            raise ValueError(f"rectangle ({r0}, {c0}) is off the tile grid ({self.br}, {self.gw})")
        h, w = x.shape[0], y.shape[0]
        if w > self.max_cols:
            raise ValueError(f"column block of {w} exceeds max_cols={self.max_cols}")
        starts = range(r0, r0 + h, self.br)

        def block(b0: int) -> None:
            self._block(x, r0, y, c0, b0, min(r0 + h, b0 + self.br))

        if self._pool is not None:
            for _ in self._pool.map(block, starts):
                if progress is not None:
                    progress.update(1)
        else:
            for b0 in starts:
                block(b0)
                if progress is not None:
                    progress.update(1)
        for acc in self._col_accs:  # every worker's counts of these columns, then zero for the next block
            self.acc_col[:, :, c0:c0 + w] += acc[:, :, :w]
            acc[:, :, :w] = 0
        for acc in self._col_hists:
            self.hist_col[c0:c0 + w] += acc[:w]
            acc[:w] = 0

    def _block(self, x, xr0: int, y, yc0: int, r0: int, r1: int) -> None:
        """Products and counts of rows [r0, r1), column group by column group."""
        torch, ops = self.torch, self.ops
        mine = self._own()
        h = r1 - r0
        xb = x[r0 - xr0:r1 - xr0]
        c_end = yc0 + y.shape[0]
        for g0 in range(yc0, c_end, self.gw):
            g1 = min(c_end, g0 + self.gw)
            width = -(-(g1 - g0) // 8) * 8 if ops.packed else g1 - g0
            G = mine.flat[: h * width].view(h, width)
            yg = y[g0 - yc0:g1 - yc0]
            ops.product(xb, yg, G, g1 - g0)
            if width > g1 - g0:  # a ragged last group: pad columns can never count
                G[:, g1 - g0:] = float("-inf")
            lo, hi = max(r0, g0), min(r1, g1)
            if lo < hi:
                idx = torch.arange(lo, hi, device=self.device)
                G[idx - r0, idx - g0] = self.diag[lo:hi]
            self._count(ops.host(G), r0, r1, g0, g1, yc0, mine)
            if self.n_grid:  # the threshold attacker's bins, the whole group at once
                ops.bin(ops.host(G), g1 - g0, self.grid, self.hist_row[r0:r1], mine.hist_col[g0 - yc0:g1 - yc0])

    def _count(self, G, r0, r1, g0, g1, yc0, mine) -> None:
        """Counts from the product G of rows [r0, r1) and columns [g0, g1) into acc_row and this worker's column
        accumulator (columns relative to ``yc0``), ``chunk`` rows at a time (in cache), every threshold of a
        direction in one comparison (inactive ones are +inf)."""
        ops, acc_row = self.ops, self.acc_row
        rk = [k for k in range(self.n_row) if k == 0 or self.row_on[r0:r1, k].any()]
        for c0 in range(g0, g1, self.tc):
            c1 = min(g1, c0 + self.tc)
            w = c1 - c0
            w8 = -(-w // 8) * 8 if ops.packed else w
            slices = [_tile_slices(e, r0, r1, c0, c1) for e in self.edges]
            S = G[:, c0 - g0:c0 - g0 + w8]
            ck = [k for k in range(self.n_col) if k == 0 or self.col_on[c0:c1, k].any()]
            col_thr = self.col_t[c0:c0 + w8, ck].T[:, None, :] if ck else None
            acc, a0 = mine.acc_col, c0 - yc0
            for p0 in range(r0, r1, self.chunk):
                p1 = min(r1, p0 + self.chunk)
                h = p1 - p0
                rows = S[None, p0 - r0:p1 - r0, :]
                if rk:
                    mask = mine.row_buf[: len(rk) * h * w8].reshape(len(rk), h, w8)
                    ops.gt(rows, self.row_t[p0:p1, rk].T[:, :, None], out=mask)
                    m8 = mask.view(ops.u8)
                    counts = ops.row_sum(m8, 0, w8)
                    for j, k in enumerate(rk):
                        acc_row[k, 0, p0:p1] += counts[j]
                    for s, sl in enumerate(slices, start=1):
                        for ra, rb, ca, cb in sl:
                            ra, rb = max(ra, p0), min(rb, p1)
                            if ra < rb:
                                part = ops.row_sum(m8[:, ra - p0:rb - p0], ca - c0, cb - c0)
                                for j, k in enumerate(rk):
                                    acc_row[k, s, ra:rb] += part[j]
                if ck:
                    mask = mine.col_buf[: len(ck) * h * w8].reshape(len(ck), h, w8)
                    ops.gt(rows, col_thr, out=mask)
                    m8 = mask.view(ops.u8)
                    counts = ops.col_sum(m8, 0, h, 0, w)
                    for j, k in enumerate(ck):
                        acc[k, 0, a0:a0 + w] += counts[j]
                    for s, sl in enumerate(slices, start=1):
                        for ra, rb, ca, cb in sl:
                            ra, rb = max(ra, p0), min(rb, p1)
                            if ra < rb:
                                part = ops.col_sum(m8, ra - p0, rb - p0, ca - c0, cb - c0)
                                for j, k in enumerate(ck):
                                    acc[k, s, ca - yc0:cb - yc0] += part[j]
