"""The tile loop's array operations: :class:`NumpyTiles` (CPU) and :class:`TorchTiles` (GPU), one interface.

On the CPU a boolean mask is counted 8 bytes at a time as int64 words: a
byte lane of a sum of at most ``LANES`` = 255 words cannot overflow into the
next.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import numpy as np

LANES = 255  # most words (columns / 8) or rows one packed sum may cover


class NumpyTiles:
    """The CPU back end: products by numpy's ``matmul`` (OpenBLAS's sgemm, faster than torch's on these tiles),
    comparisons on numpy views of the torch buffers, masks counted as packed words; one worker thread per torch
    thread, every library's own threads set to one meanwhile."""

    name = "numpy"
    packed = True
    int32 = np.int32
    u8 = np.uint8

    def __init__(self, device, block_rows: int):
        import torch

        self.chunk = 128  # rows compared at once: a cache-sized slab, <= LANES
        self.workers = torch.get_num_threads()

    def threads(self):
        return single_threaded_libraries()

    def host(self, t):
        return t.numpy()

    def zeros(self, shape, dtype=np.int64):
        return np.zeros(shape, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        return a

    def grid(self, g: np.ndarray):
        return g

    def product(self, xb, yg, G, w: int) -> None:
        np.matmul(xb.numpy(), yg.numpy().T, out=G.numpy()[:, :w])

    def gt(self, a, b, out) -> None:
        np.greater(a, b, out=out)

    def row_sum(self, mask, a: int, b: int):
        """Ones in mask[..., a:b] per leading index (int64); mask is uint8."""
        a8, b8 = a // 8, -(-b // 8)
        words = mask.view(np.int64)[..., a8:b8]
        total = words.sum(-1).view(np.uint8).reshape(*words.shape[:-1], 8).sum(-1, dtype=np.int64)
        if 8 * a8 < a:
            total -= mask[..., 8 * a8:a].sum(-1, dtype=np.int64)
        if b < 8 * b8:
            total -= mask[..., b:8 * b8].sum(-1, dtype=np.int64)
        return total

    def col_sum(self, mask, ra: int, rb: int, u: int, v: int):
        """Ones in mask[:, ra:rb, u:v] per (leading, column) (int64); mask (L, h, w) uint8."""
        u8, v8 = u // 8, -(-v // 8)
        words = mask.view(np.int64)[:, :, u8:v8]
        total = 0
        for c in range(ra, rb, LANES):
            total = total + words[:, c:min(rb, c + LANES)].sum(1).view(np.uint8).astype(np.int64)
        return total[:, u - 8 * u8:v - 8 * u8]

    def bin(self, S, w: int, grid, row_out, col_out) -> None:
        G = len(grid)
        cap = max(BIN_CELLS, w)
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


class TorchTiles:
    """The GPU back end (on a CPU only to test this path): torch products, comparisons and sums on the device,
    masks summed as they are, one worker."""

    name = "torch"
    packed = False

    def __init__(self, device, block_rows: int):
        import torch

        self.torch = torch
        self.device = device
        self.int32 = torch.int32
        self.u8 = torch.uint8
        self.chunk = block_rows
        self.workers = 1

    def threads(self):
        return nullcontext()

    def host(self, t):
        return t

    def zeros(self, shape, dtype=None):
        return self.torch.zeros(shape, dtype=dtype or self.torch.int64, device=self.device)

    def to_numpy(self, a) -> np.ndarray:
        return a.cpu().numpy()

    def grid(self, g: np.ndarray):
        return self.torch.as_tensor(g, device=self.device)

    def product(self, xb, yg, G, w: int) -> None:
        self.torch.mm(xb, yg.T, out=G)  # unpacked: G is exactly w wide

    def gt(self, a, b, out) -> None:
        self.torch.gt(a, b, out=out)

    def row_sum(self, mask, a: int, b: int):
        return mask[..., a:b].sum(-1, dtype=self.torch.int64)

    def col_sum(self, mask, ra: int, rb: int, u: int, v: int):
        return mask[:, ra:rb, u:v].sum(1, dtype=self.torch.int64)

    def bin(self, S, w: int, grid, row_out, col_out) -> None:
        torch = self.torch
        G = len(grid)
        cap = max(BIN_CELLS, w)
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


def backend(device, engine: str, block_rows: int):
    """``engine`` ``"numpy"`` or ``"torch"``; ``"auto"``: numpy on a CPU, torch on a GPU."""
    numpy = device.type == "cpu" if engine == "auto" else engine == "numpy"
    return (NumpyTiles if numpy else TorchTiles)(device, block_rows)


@contextmanager
def torch_threads(k: int):
    """torch's intra-op threads set to ``k``, restored afterwards (idle torch threads spin after each
    operation on a busy CPU and slow the numpy work that follows)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(k)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def single_threaded_libraries():
    """torch's and every BLAS library's threads set to one, restored afterwards: the counter's workers are the
    parallelism."""
    from threadpoolctl import threadpool_limits

    with torch_threads(1), threadpool_limits(limits=1, user_api="blas"):
        yield


def shifted(thr, tie_tol: float, rows: int, active: np.ndarray | None) -> np.ndarray:
    """(rows, K) float32 thresholds + tie_tol; +inf where inactive and in the padding rows."""
    thr = np.asarray(thr, dtype=np.float32)
    out = np.full((rows, thr.shape[1]), np.inf, dtype=np.float32)
    out[: len(thr)] = thr + np.float32(tie_tol)
    if active is not None:
        out[: len(thr)][~active] = np.inf
    return out


BIN_CELLS = 1 << 14  # selected cells binned at once: bounds the binning's index arrays whatever the data


def bin_bytes(h: int, w: int, n_grid: int) -> int:
    """Most bytes a back end's ``bin`` holds for one (h, w) tile on a grid of ``n_grid`` points.

    ``bin(S, w, grid, row_out, col_out)`` adds to ``row_out`` (h, G) and ``col_out`` (w, G) how many scores
    of ``S[:, :w]`` fall in each bin of ``grid`` (bin g: grid[g] <= score < grid[g + 1]; scores below
    grid[0] are skipped), in runs of rows holding at most ``max(BIN_CELLS, w)`` selected cells (integer
    sums: the runs change no count). Memory: the mask and per-row sums, about 64 bytes per selected cell of
    a run, and the two bincount outputs."""
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
