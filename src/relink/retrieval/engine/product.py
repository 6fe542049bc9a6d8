"""The pass over the score product: threshold counts of every row and column, within a memory budget.

:func:`count_pass` forms the product in slabs of query rows against blocks
of candidates, both sized by the budget (:func:`relink.retrieval.memory.plan`),
and counts both directions from each tile
(:class:`~relink.retrieval.engine.tiles.TileCounter`). Slabs are split across
the ranks of a process group (column counts are partial per rank; one
all-reduce sum makes them whole) and, with a work folder, kept as they
finish (:mod:`relink.retrieval.work`): a resumed pass computes only the rows
no finished slab holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...embed.distributed import sync
from ...errors import RelinkError
from ..memory import Meter, plan, show_bytes, state_bytes
from ..scale import Scale
from .tiles import TileCounter


@dataclass
class ThresholdCounts:
    """int64 arrays of shape (thresholds, 1 + segmentations, n).

    Index 0 on the middle axis counts over all candidates; index s + 1 over the
    candidates in the same group of segmentation s.
    """

    row_above: np.ndarray
    col_above: np.ndarray
    row_hist: np.ndarray | None = None  # (n, G) int32: scores of each row in each bin of the grid
    col_hist: np.ndarray | None = None
    run: dict | None = None  # the plan and timings of the pass that made them
    grid: np.ndarray | None = None  # the bins' grid: the one asked for, or fewer of its points to fit the budget


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


def _units(n: int, grid: int, finished: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Row ranges of one tile grid step each, outside the finished ranges."""
    done = np.zeros(-(-n // grid), dtype=bool)
    for a, b in finished:
        done[a // grid:-(-b // grid)] = True
    return [(u * grid, min(n, (u + 1) * grid)) for u in np.flatnonzero(~done)]


def _slabs(units: list[tuple[int, int]], rows: int) -> list[tuple[int, int]]:
    """Consecutive units merged into slabs of at most ``rows`` rows."""
    out: list[tuple[int, int]] = []
    for a, b in units:
        if out and out[-1][1] == a and b - out[-1][0] <= rows:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _fill(buf, rows, a: int, b: int, step: int):
    """Rows [a, b) of ``rows`` into ``buf[:b - a]`` (a tensor), ``step`` rows read at a time."""
    import torch

    for p in range(a, b, step):
        q = min(b, p + step)
        buf[p - a:q - a].copy_(torch.from_numpy(rows.numpy(slice(p, q))))
    return buf[:b - a]


def _thin(grid: np.ndarray) -> np.ndarray:
    """Every other point of ``grid`` (ascending), its first and last kept."""
    g = np.asarray(grid)
    return np.unique(np.concatenate([g[::2], g[-1:]])).astype(g.dtype)


def _plan(counter: TileCounter, n: int, d: int, meter: Meter):
    """The pass's blocks for ``counter`` within what ``meter`` has left (RelinkError where one tile cannot fit)."""
    n_seg, n_col, n_grid = counter.n_seg, counter.n_col, counter.n_grid
    tile = counter.workers * counter.buffer_bytes()  # the tiles, their masks and their binning temporaries
    col_bytes = counter.workers * (n_col * n_seg * 8 + n_grid * 4)
    # what is left of the budget once the per-query state is held (measured where the OS tells)
    free = meter.left(state_bytes(n, n_seg, counter.n_row, n_col, n_grid))
    if free is not None:
        free -= 8 * n_col * n_seg * n * 2  # this slab's column counts and their running total, made below
        # the binned scores of rows and columns and the columns' running total: zero pages until the pass
        # touches them, so the resident set does not show them yet
        free -= 12 * n_grid * n
        free -= meter.budget // 8  # what no estimate sees: the allocator's slack, interpreter objects
    return plan(n, d, free, tile, counter.row_grid, counter.col_grid, col_bytes, meter.read_bytes(), meter.budget)


def count_pass(xs, ys, diag: np.ndarray, rows: tuple, cols: tuple, edges, tie_tol: float, scale: Scale,
               meter: Meter, key: dict[str, Any], grid: np.ndarray | None = None) -> ThresholdCounts:
    """Threshold counts of every row and column (see the module docstring); ``rows`` and ``cols`` are
    (thresholds, active) of each direction. With ``scale.work``, finished slabs are kept there under ``key``
    plus the tile grid. The plan and timings are in ``.run`` of the result."""
    import torch
    from tqdm.auto import tqdm

    from ..work import AuditWork

    n, d, dev = len(xs), xs.d, xs.device
    comm, rank, world, work, progress = scale.comm, scale.rank, scale.world, scale.work, scale.progress
    asked = grid
    stats: dict[str, Any] = {}
    store, finished, failure, p = None, [], None, None
    try:
        while True:
            counter = TileCounter(n, torch.as_tensor(diag, device=dev), rows, cols, edges, tie_tol, grid,
                                  scale.tiles, scale.engine)
            try:
                p = _plan(counter, n, d, meter)
                break
            except RelinkError:
                # Binned scores that do not fit: every other grid point goes, rather than spilling to disk (the
                # attacker's bounds hold for any grid; the grid used is returned and recorded).
                if grid is None or len(grid) <= 2:
                    raise
                grid = _thin(grid)
        n_seg, n_col, n_grid = counter.n_seg, counter.n_col, counter.n_grid
        if n_grid:
            stats.update(confident_grid=n_grid, confident_grid_asked=len(asked))
        counter.max_cols = p.block_cols
        if work is not None:
            tiles = {"block_rows": counter.br, "group_cols": counter.gw, "tile_cols": counter.tc, "device": dev.type,
                     "engine": counter.ops.name, "kernel": 2}  # 2: OpenBLAS's sgemm on CPUs
            if n_grid:
                tiles["confident_grid"] = [float(v) for v in np.asarray(grid, dtype=np.float32)]
            store = AuditWork(work, {**(key or {}), "grid": tiles})
            if rank == 0:
                stats["work_state"] = store.prepare()
    except Exception as exc:  # noqa: BLE001 - every rank must learn of it (ranks measure their own memory)
        failure = exc
    sync(comm, failure)
    if store is not None:
        finished = store.finished()
    units = _units(n, counter.row_grid, finished)
    mine = split_rows(units, world)[rank]
    slabs = _slabs(mine, p.slab_rows)
    blocks = [(c, min(n, c + p.block_cols)) for c in range(0, n, p.block_cols)]
    stats.update(memory=meter.budget, slab_rows=p.slab_rows, block_cols=p.block_cols, slabs=len(slabs),
                     blocks=len(blocks), finished_before=len(finished), workers=counter.workers,
                     tile=(counter.br, counter.gw, counter.tc),
                     memory_plan=show_bytes(meter.budget) if meter.budget else None)
    total_col = np.zeros((n_col, n_seg, n), dtype=np.int64)
    total_hist = np.zeros((n, n_grid), dtype=np.int32) if n_grid else None  # counts < n
    t0 = time.perf_counter()
    try:
        x_buf = torch.empty((max((b - a for a, b in slabs), default=0), d), dtype=torch.float32, device=dev)
        y_buf = torch.empty((p.block_cols if slabs else 0, d), dtype=torch.float32, device=dev)
        y_held = None  # the one block, when every column fits in one: read once
        n_steps = sum(-(-(b - a) // counter.br) for a, b in slabs) * len(blocks)
        with counter, tqdm(total=n_steps, desc="score blocks", unit="block", disable=None if progress else True) as bar:
            for a, b in slabs:
                x = _fill(x_buf, xs, a, b, p.read_rows)
                for c0, c1 in blocks:
                    if y_held is None or len(blocks) > 1:
                        y_held = _fill(y_buf, ys, c0, c1, p.read_rows)
                    counter.add(x, a, y_held, c0, bar)
                col = counter.take_cols()
                hist = counter.col_hist()
                if store is not None:
                    store.write(a, b, counter.row_counts(a, b), col, counter.row_hist(a, b), hist)
                total_col += col
                if n_grid:
                    total_hist += hist
                    counter.clear_col_hist()
        del x_buf, y_buf, y_held
    except Exception as exc:  # noqa: BLE001 - re-raised by sync, on every rank
        failure = exc
    sync(comm, failure)
    row = counter.row_counts(0, n)
    row_hist = counter.ops.to_numpy(counter.hist_row) if n_grid else None  # the counter's own: no copy
    stats["product_s"] = time.perf_counter() - t0
    if rank == 0:
        for a, b in finished:
            r, c, rh, ch = store.read(a, b)
            row[:, :, a:b] = r
            total_col += c
            if n_grid:
                row_hist[a:b] = rh
                total_hist += ch
    if comm is not None:
        t1 = time.perf_counter()
        parts = [row, total_col] + ([row_hist.astype(np.int64), total_hist.astype(np.int64)] if n_grid else [])
        both = comm.all_reduce_sum(np.concatenate([a.reshape(-1) for a in parts]))
        out, at = [], 0
        for a in parts:
            out.append(both[at:at + a.size].reshape(a.shape))
            at += a.size
        row, total_col = out[0], out[1]
        if n_grid:
            row_hist, total_hist = out[2], out[3]
        stats["all_reduce_s"] = time.perf_counter() - t1
        stats["all_reduce_bytes"] = int(both.nbytes)
    if not n_grid:
        return ThresholdCounts(row, total_col, run=stats)
    return ThresholdCounts(row, total_col, np.asarray(row_hist, dtype=np.int32), np.asarray(total_hist, dtype=np.int32),
                           run=stats, grid=grid)
