"""Keyed folders: a computation's output or unfinished work, named by everything it depends on.

A *key* is a JSON-able dict of the declared inputs, compared as JSON stores it. :class:`KeyedWork`
(unfinished work): the same key resumes, another key empties it, a non-empty folder without a key is
refused, never emptied. :func:`build_keyed` (a finished folder holding :data:`ARTIFACT_KEY`) is reused
on a matching key, else built aside and renamed into place only when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from .errors import RelinkError
from .guard import is_work_folder
from .io import atomic_dir, canonical, write_json

MANIFEST = "manifest.json"
ARTIFACT_KEY = ".relink-key.json"


def work_path(out: str | os.PathLike) -> Path:
    """The work folder of output ``out``: ``OUT.work`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".work")


def read_key(file: str | os.PathLike) -> dict[str, Any] | None:
    """The key stored in ``file``; ``None`` when it is missing or unreadable."""
    try:
        return json.loads(Path(file).read_text())
    except (OSError, ValueError):
        return None


class KeyedWork:
    """Unfinished work at ``path`` for ``key``, stored in ``key_file`` (default ``path/manifest.json``);
    ``what`` and ``keeps`` word the refusal."""

    what = "relink"
    keeps = "its finished parts"

    def __init__(self, path: str | os.PathLike, key: dict[str, Any], key_file: str | os.PathLike | None = None,
                 what: str | None = None, keeps: str | None = None):
        self.what, self.keeps = what or self.what, keeps or self.keeps
        self.path = Path(path)
        self.key = canonical(key)
        self.key_file = self.path / MANIFEST if key_file is None else Path(key_file)

    def stored_key(self) -> dict[str, Any] | None:
        return read_key(self.key_file)

    def refuse_foreign(self) -> None:
        """Refuse a path that is not a folder holding a key file or nothing (never emptied: it is not relink's)."""
        if (self.path.exists() or self.path.is_symlink()) and not is_work_folder(self.path, (self.key_file,)):
            raise RelinkError(f"{self.path} exists and is not a relink {self.what} work folder (it is where an "
                              f"interrupted run keeps {self.keeps}); move it away or choose another --out")

    def prepare(self) -> str:
        """Make the folder match the key; return ``"new"``, ``"resume"`` or ``"stale"`` (emptied)."""
        if self.path.is_dir() and self.stored_key() == self.key:
            return "resume"
        self.refuse_foreign()
        state = "stale" if self.path.exists() else "new"
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        write_json(self.key_file, self.key)
        return state

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.key_file.unlink(missing_ok=True)


def build_keyed(path: str | os.PathLike, key: dict[str, Any], build: Callable[[Path], Any], *, force: bool = False,
                resumable: bool = False) -> bool:
    """Make ``path`` the output of ``build(folder)`` for ``key``; return whether it was built (not reused).

    With ``resumable`` the folder is a :class:`KeyedWork` ``.NAME.partial`` that outlives an interruption.
    """
    path, key = Path(path), canonical(key)
    if not force and read_key(path / ARTIFACT_KEY) == key:
        return False
    if not resumable:
        with atomic_dir(path) as tmp:
            build(tmp)
            write_json(tmp / ARTIFACT_KEY, key)
        return True
    work = KeyedWork(path.with_name(f".{path.name}.partial"), key, path.with_name(f".{path.name}.partial-key.json"),
                     "cache", "a partly built artifact")
    if force:
        work.remove()
    work.prepare()
    build(work.path)
    write_json(work.path / ARTIFACT_KEY, key)
    with atomic_dir(path) as tmp:
        os.replace(work.path, tmp)  # the finished folder renamed over the empty temporary one
    work.remove()
    return True
