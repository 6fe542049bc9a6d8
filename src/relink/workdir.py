"""A keyed work folder: where a long computation keeps its finished parts, so a killed run resumes.

``OUT.work/`` beside an output holds ``manifest.json`` — the key of the
computation: everything its parts depend on — and the parts themselves,
each written atomically by the user of the folder. :meth:`KeyedWork.prepare`
makes the folder match a key: the same key resumes; another key empties it
(a cache miss, never a stale hit); a non-empty folder without a manifest is
not relink's and is refused, never emptied. ``relink embed`` keeps its
shards here and ``relink audit`` its finished slabs; ``relink train`` uses
the same folder name with its own manifest (the ladder file).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .errors import RelinkError
from .io import canonical, write_json

MANIFEST = "manifest.json"


def work_path(out: str | os.PathLike) -> Path:
    """The work folder of output ``out``: ``OUT.work`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".work")


class KeyedWork:
    """The on-disk state of one computation, named by ``key`` (compared as JSON stores it).

    ``what`` names the computation in the refusal (e.g. ``"embed"``: "not a
    relink embed work folder"); ``keeps`` says what such a folder holds.
    """

    what = "relink"
    keeps = "its finished parts"

    def __init__(self, path: str | os.PathLike, key: dict[str, Any]):
        self.path = Path(path)
        self.key = canonical(key)

    def stored_key(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def prepare(self) -> str:
        """Make the folder match the key; return ``"new"``, ``"resume"`` or ``"stale"`` (emptied)."""
        if self.stored_key() == self.key:
            return "resume"
        if self.path.exists() or self.path.is_symlink():
            ours = self.path.is_dir() and not self.path.is_symlink() and (
                (self.path / MANIFEST).is_file() or not any(self.path.iterdir()))
            if not ours:
                raise RelinkError(f"{self.path} exists and is not a relink {self.what} work folder (it is where an "
                                  f"interrupted run keeps {self.keeps}); move it away or choose another --out")
        state = "stale" if self.path.exists() else "new"
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        write_json(self.path / MANIFEST, self.key)
        return state

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
