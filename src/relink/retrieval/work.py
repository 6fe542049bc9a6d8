"""The audit's keyed work folder (:class:`relink.workdir.KeyedWork`): finished slabs of the product pass.

``relink audit --out T`` keeps ``T.work/`` beside the table while it runs,
keyed by everything the counts depend on (a digest of every row in work
order, patients, groups, directions, levels, ``tie_tol``, tile grid, device
type and kernel). Per finished slab of query rows ``[a, b)``,
``rows-A-B.npz`` holds ``row`` (those rows' counts, thresholds x
segmentations x (b - a)) and ``col`` (their part of every column's counts,
thresholds x segmentations x n), written atomically: a slab is finished
exactly when its file exists. Counts are integers, so a resumed run adds up
to an uninterrupted one whatever the budget or processes of either.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..io import atomic_path
from ..workdir import KeyedWork, work_path

__all__ = ["AuditWork", "work_path"]
_SLAB = re.compile(r"rows-(\d{10})-(\d{10})\.npz$")


class AuditWork(KeyedWork):
    """The on-disk state of one audit's product pass (see the module docstring)."""

    what = "audit"
    keeps = "its finished blocks"

    def finished(self) -> list[tuple[int, int]]:
        """Row ranges ``[a, b)`` of the finished slabs, sorted; overlapping leftovers are ignored."""
        ranges = []
        for p in self.path.iterdir() if self.path.is_dir() else ():
            m = _SLAB.match(p.name)
            if m:
                ranges.append((int(m.group(1)), int(m.group(2))))
        kept, end = [], -1
        for a, b in sorted(ranges):
            if a >= end and b > a:  # a range overlapping a kept one cannot come from one key: never add it twice
                kept.append((a, b))
                end = b
        return kept

    def _file(self, a: int, b: int) -> Path:
        return self.path / f"rows-{a:010d}-{b:010d}.npz"

    def write(self, a: int, b: int, row: np.ndarray, col: np.ndarray, row_hist: np.ndarray | None = None,
              col_hist: np.ndarray | None = None) -> None:
        """Keep the counts of finished slab ``[a, b)`` atomically, with its binned scores when a grid is counted."""
        hist = {} if row_hist is None else {"row_hist": row_hist, "col_hist": col_hist}
        with atomic_path(self._file(a, b)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, row=row, col=col, **hist)

    def read(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        with np.load(self._file(a, b), allow_pickle=False) as z:
            hist = (z["row_hist"], z["col_hist"]) if "row_hist" in z.files else (None, None)
            return z["row"], z["col"], *hist
