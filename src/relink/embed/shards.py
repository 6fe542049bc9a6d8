"""Resumable shard bookkeeping for the embedder.

The keyed work folder ``OUT.work/`` holds ``manifest.json`` (the key) and, per finished shard of
consecutive rows, ``START-STOP.<array>.npy``, ``START-STOP.kept.npy`` (int64 row indices kept) and,
written last, ``START-STOP.done.json`` (the skipped rows): a shard without it is redone. Shard ``k``
belongs to rank ``k % world_size``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io import write_json, write_npy
from ..workdir import KeyedWork, work_path

__all__ = ["Shard", "EmbedWork", "plan_shards", "shards_for_rank", "work_path"]


@dataclass(frozen=True)
class Shard:
    """Rows ``start`` (inclusive) to ``stop`` (exclusive) of the cohort."""

    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{self.start:010d}-{self.stop:010d}"

    def __len__(self) -> int:
        return self.stop - self.start


def plan_shards(n_rows: int, shard_size: int) -> list[Shard]:
    """Consecutive shards covering ``[0, n_rows)``."""
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    return [Shard(s, min(s + shard_size, n_rows)) for s in range(0, n_rows, shard_size)]


def shards_for_rank(shards: list[Shard], rank: int, world_size: int) -> list[Shard]:
    """The shards one process computes: every ``world_size``-th, starting at ``rank``."""
    return shards[rank::world_size]


class EmbedWork(KeyedWork):
    """The work folder of one embedding computation."""

    what = "embed"
    keeps = "its shards"

    def is_done(self, shard: Shard) -> bool:
        return (self.path / f"{shard.name}.done.json").is_file()

    def write(self, shard: Shard, arrays: dict[str, np.ndarray], kept: np.ndarray, skipped: list[dict[str, Any]]) -> None:
        """Store one finished shard; the ``done`` marker goes last."""
        for name, arr in arrays.items():
            write_npy(self.path / f"{shard.name}.{name}.npy", np.ascontiguousarray(arr, dtype=np.float32))
        write_npy(self.path / f"{shard.name}.kept.npy", np.asarray(kept, dtype=np.int64))
        write_json(self.path / f"{shard.name}.done.json", {"rows": [shard.start, shard.stop], "skipped": skipped})

    def read_array(self, shard: Shard, name: str, mmap: bool = True) -> np.ndarray:
        return np.load(self.path / f"{shard.name}.{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)

    def kept(self, shard: Shard) -> np.ndarray:
        return np.load(self.path / f"{shard.name}.kept.npy", allow_pickle=False)

    def skipped(self, shard: Shard) -> list[dict[str, Any]]:
        return json.loads((self.path / f"{shard.name}.done.json").read_text())["skipped"]
