"""A memory budget for the audit, and the block sizes it allows.

``relink audit --memory 256MB`` bounds the audit's own data: what the process
holds above its resident set once the libraries the audit uses are imported
(:func:`baseline`); the libraries themselves are excluded, since no block
size can trade against them. Covered: the row table's needed columns, the
per-query state (a few hundred bytes per pair), the blocks the pass streams
and the summary after it. Sizes take K, M, G or T suffixes in powers of
1024; the default is half of the memory available when the audit starts.

A :class:`Meter` measures what the audit holds and :func:`plan` gives the
product pass's blocks what is left. Blocks never change a number (the tiles
lie on one grid): a smaller budget means more passes, not other results. A
budget that cannot hold one tile beside the per-query state is refused with
the smallest one that could. The one exception is the threshold attacker's
binned scores (12 bytes per pair and grid point): where they do not fit, the
pass bins on every other point of the grid
(:func:`relink.retrieval.engine.product.count_pass` returns the grid used).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import RelinkError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
READ_ROWS_BYTES = 8 << 20  # rows read and normalised at once (two copies live while normalising)
MIN_BUDGET = 16 << 20


def parse_memory(text, flag: str = "--memory") -> int:
    """Bytes from ``"256MB"``, ``"1.5G"``, ``"512k"``, ``"1048576"``; RelinkError naming ``flag`` otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = str(text)
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(text))
    if not m:
        raise RelinkError(f"{flag} {text!r}: give a size such as 512MB, 2G or 65536 (K, M, G, T suffixes)")
    size = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if size < MIN_BUDGET:
        raise RelinkError(f"{flag} {text!r}: at least {show_bytes(MIN_BUDGET)} is needed")
    return size


def show_bytes(n: float) -> str:
    """``268435456`` -> ``"256 MB"`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TB"


def available_memory() -> int:
    """Bytes the operating system reports as available now (MemAvailable on Linux)."""
    try:
        import psutil  # optional: the most portable answer

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def default_memory() -> int:
    """Half of the memory available now (at least :data:`MIN_BUDGET`)."""
    return max(MIN_BUDGET, available_memory() // 2)


def resident() -> int | None:
    """This process's resident set in bytes, or None where it cannot be read."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - no psutil, or no permission: estimate instead
        return None


def baseline() -> int | None:
    """The resident set the budget counts from: this process once the libraries the audit uses are imported
    (bytes; None where it cannot be read). Call it before the audit reads any data."""
    import numpy  # noqa: F401 - each import here is what the budget excludes
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import scipy.special  # noqa: F401
    import scipy.stats  # noqa: F401
    import torch  # noqa: F401

    # relink's own modules of the audit (relink.retrieval.audit, .summary, .confident) are imported by the
    # caller first: this module sits below them (the layers contract)
    _warm_up()
    return resident()


def _warm_up() -> None:
    """Use each library once on a few bytes: the code and buffers they load on first use (Arrow's parquet
    reader, BLAS, torch's kernels, scipy's special functions) belong to the libraries, not to the data."""
    import io

    import numpy as np
    import pandas as pd
    import torch
    from scipy import special, stats

    buffer = io.BytesIO()
    pd.DataFrame({"a": ["x", "y"], "b": [1.0, 2.0]}).to_parquet(buffer, index=False)
    pd.read_parquet(io.BytesIO(buffer.getvalue()))
    x = np.ones((8, 8), np.float32)
    np.matmul(x, x.T)
    torch.mm(torch.from_numpy(x), torch.from_numpy(x).T)
    special.gammaln(np.arange(1.0, 9.0))
    stats.beta.ppf(0.5, 2.0, 3.0)


class Meter:
    """A budget of ``budget`` bytes (None: unbounded) for what the process holds beyond ``start`` (the
    resident set the budget counts from, e.g. :func:`baseline`; default: now)."""

    def __init__(self, budget: int | None, start: int | None = None):
        self.budget = budget
        self.start = resident() if start is None else start

    def left(self, estimate: int) -> int | None:
        """Bytes still free: the budget less what the process grew by since the start (or less
        ``estimate``, where the resident set cannot be read); None when unbounded."""
        if self.budget is None:
            return None
        now = resident()
        used = estimate if now is None or self.start is None else max(0, now - self.start)
        return self.budget - used

    def read_bytes(self) -> int:
        """Bytes of rows to read at once: :data:`READ_ROWS_BYTES`, less under a small budget."""
        if self.budget is None:
            return READ_ROWS_BYTES
        return max(1 << 18, min(READ_ROWS_BYTES, self.budget // 32))


def return_freed_memory() -> None:
    """Have freed memory leave the resident set at once: the C allocator's large blocks (glibc) and Arrow's.

    glibc raises its mmap threshold after each large block is freed and keeps
    such blocks in a heap it never shrinks: a fixed threshold of 1 MB returns
    them. Arrow's own allocator keeps the pages of a parquet read; allocating
    from the C allocator hands them back. Process-wide settings: the command
    makes them, the library does not.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except OSError:
        pass
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def state_bytes(n: int, n_seg: int, n_row: int, n_col: int, n_grid: int = 0) -> int:
    """What the per-query state of the product pass takes (bytes, an upper estimate): truth score, codes,
    patient statistics, thresholds and their shifted copies, counts, and binned scores of rows and columns."""
    return n * (64 + 48 * n_seg + (n_row + n_col) * (16 + 24 * n_seg) + 8 * n_grid)


@dataclass(frozen=True)
class Plan:
    """Rows of a query slab, columns of a candidate block, rows read at once."""

    slab_rows: int
    block_cols: int
    read_rows: int


def plan(n: int, d: int, free: int | None, tile: int, row_grid: int, col_grid: int, col_bytes: int,
         read_bytes: int = READ_ROWS_BYTES, budget: int | None = None) -> Plan:
    """Block sizes within ``free`` bytes (None: everything at once).

    ``tile``: bytes of all workers' tile buffers; slabs are multiples of
    ``row_grid`` rows, blocks of ``col_grid`` columns; ``col_bytes``: extra
    bytes per column of a block; ``read_bytes``: rows read at once (two copies
    live while normalised); ``budget``: named in the message when too small.
    """
    row = 4 * d
    read_rows = max(1, min(n, read_bytes // row))
    read = 2 * read_rows * row
    if free is None:
        return Plan(n, n, read_rows)
    least = row_grid * row + col_grid * (row + col_bytes)
    if free - tile - read < least:
        short = tile + read + least - free
        total = (budget or free) + short
        raise RelinkError(f"--memory {show_bytes(budget or free)} is too small for {n:,} pairs of dimension {d}: "
                          f"the per-query state and one tile of the product need about {show_bytes(short)} more; "
                          f"give at least {show_bytes(total)}")
    free -= tile + read
    # Columns first (each slab reads every block, so wider blocks mean fewer reads per slab), up to half.
    cols = min(-(-n // col_grid) * col_grid, max(col_grid, (free // 2) // (row + col_bytes) // col_grid * col_grid))
    free -= cols * (row + col_bytes)
    rows = min(-(-n // row_grid) * row_grid, max(row_grid, free // row // row_grid * row_grid))
    return Plan(min(rows, n), min(cols, n), read_rows)
