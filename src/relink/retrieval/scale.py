"""How an audit runs, never what it computes (:mod:`relink.retrieval.engine` says why no number changes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Scale:
    """``memory``: bytes the audit may add (None: half of what is available, shared by the processes of a
    machine; :mod:`relink.retrieval.memory`), counted from the resident set ``held_from`` (None: when the
    audit begins); ``comm``: a process group splitting the query rows (:mod:`relink.retrieval.engine.product`);
    ``work``: a folder keeping finished blocks so an interrupted audit resumes (:mod:`relink.retrieval.work`);
    ``progress``: progress bars. ``tiles`` (block rows, tile columns) and ``engine`` (``"numpy"``,
    ``"torch"``, ``"auto"``) set the product's tiling, for tests of the tiling itself."""

    memory: int | None = None
    held_from: int | None = None
    comm: Any = None
    work: Path | None = None
    progress: bool = False
    tiles: tuple[int | None, int | None] = (None, None)
    engine: str = "auto"

    @property
    def rank(self) -> int:
        return self.comm.rank if self.comm is not None else 0

    @property
    def world(self) -> int:
        return self.comm.world_size if self.comm is not None else 1
