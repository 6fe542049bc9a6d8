"""The few array operations the tile loop needs, for numpy (CPU) or torch (GPU).

A boolean mask is counted 8 bytes at a time as int64 words (:meth:`Ops.row_sum`,
:meth:`Ops.col_sum`): each byte lane of a sum of at most ``LANES`` = 255
words cannot overflow into the next, so a row sum covers at most 2040
columns at once and a column sum at most 255 rows. On a GPU the masks are
summed as they are.
"""

from __future__ import annotations

import numpy as np

LANES = 255  # most words (columns / 8) or rows one packed sum may cover


class Ops:
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

    def to_numpy(self, a) -> np.ndarray:
        return a if self.numpy else a.cpu().numpy()

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
        for c in range(ra, rb, LANES):
            total = total + words[:, c:min(rb, c + LANES)].sum(1).view(self.u8).astype(np.int64)
        return total[:, u - 8 * u8:v - 8 * u8]


def shifted(thr, tie_tol: float, rows: int, active: np.ndarray | None) -> np.ndarray:
    """(rows, K) float32 thresholds + tie_tol; +inf where inactive and in the padding rows."""
    thr = np.asarray(thr, dtype=np.float32)
    out = np.full((rows, thr.shape[1]), np.inf, dtype=np.float32)
    out[: len(thr)] = thr + np.float32(tie_tol)
    if active is not None:
        out[: len(thr)][~active] = np.inf
    return out


BIN_CELLS = 1 << 14  # selected cells binned at once: bounds bin_rows's index arrays whatever the data


def bin_bytes(h: int, w: int, n_grid: int) -> int:
    """Most bytes :func:`bin_rows` holds for one (h, w) tile on a grid of ``n_grid`` points: the tile's mask
    (1 byte a cell) and its per-row sums, about 64 bytes per selected cell for at most ``max(BIN_CELLS, w)``
    cells at once (flat index, row, column, score, bin, the two bincount keys) and the two bincount outputs."""
    return h * w + 8 * h + 64 * max(BIN_CELLS, w) + 8 * n_grid * (h + w)


def _chunks(per_row, cap: int):
    """Row ranges [a, b) whose ``per_row`` counts (int64, >= 0, each <= cap) sum to at most ``cap``."""
    ends = np.cumsum(per_row)
    a, out = 0, []
    while a < len(per_row):
        base = ends[a - 1] if a else 0
        b = int(np.searchsorted(ends, base + cap, side="right"))
        b = max(b, a + 1)
        out.append((a, b))
        a = b
    return out


def bin_rows(ops, S, w: int, grid, row_out, col_out) -> None:
    """Add to ``row_out`` (h, G) and ``col_out`` (w, G) how many scores of ``S[:, :w]`` fall in each bin of
    ``grid`` (ascending thresholds; bin g: grid[g] <= score < grid[g + 1]); scores below grid[0] are skipped,
    so only the cells at or above it are touched (one call per tile: a call has a fixed cost).

    Memory: at most :func:`bin_bytes`. The share of cells at or above grid[0] depends on the data (all of
    them where every score clears it), so the selected cells are binned in runs of rows holding at most
    ``max(BIN_CELLS, w)`` of them (from the mask's per-row sums); integer sums, so the runs change no count.
    """
    G = len(grid)
    cap = max(BIN_CELLS, w)
    if ops.numpy:
        mask = S[:, :w] >= grid[0]
        total = int(np.count_nonzero(mask))
        if not total:
            return
        runs = [(0, mask.shape[0])] if total <= cap else _chunks(mask.sum(1, dtype=np.int64), cap)
        for a, b in runs:
            idx = np.flatnonzero(mask[a:b])
            if not len(idx):
                continue
            r, c = np.divmod(idx, w)
            del idx
            r += a
            bins = np.searchsorted(grid, S[r, c], side="right") - 1
            np.add(row_out[a:b], np.bincount((r - a) * G + bins, minlength=(b - a) * G).reshape(-1, G),
                   out=row_out[a:b], casting="unsafe")
            np.add(col_out, np.bincount(c * G + bins, minlength=w * G).reshape(w, G), out=col_out, casting="unsafe")
        return
    torch = ops.torch
    mask = S[:, :w] >= grid[0]
    per_row = mask.sum(1, dtype=torch.int64)
    total = int(per_row.sum())
    if not total:
        return
    runs = [(0, mask.shape[0])] if total <= cap else _chunks(per_row.cpu().numpy(), cap)
    for a, b in runs:
        r, c = torch.nonzero(mask[a:b], as_tuple=True)
        if not len(r):
            continue
        r += a
        bins = torch.bucketize(S[r, c].contiguous(), grid, right=True) - 1
        row_out[a:b] += torch.bincount((r - a) * G + bins, minlength=(b - a) * G).view(-1, G).to(row_out.dtype)
        col_out += torch.bincount(c * G + bins, minlength=w * G).view(w, G).to(col_out.dtype)
