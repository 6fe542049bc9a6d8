"""Where a ladder is trained and how it appears: a resumable work folder, then one atomic swap.

``relink train --out OUT`` trains in ``OUT.work`` (rungs, ``ladder.json``, ``train-state.pt``: the
optimizer state at the last rung) and renames it to ``OUT`` in one step when complete. Rules:

* ``OUT`` holds the finished ladder of the same settings: nothing to do; of other settings: refused
  unless ``overwrite`` (and kept until the new one is complete);
* ``OUT.work`` of the same settings is resumed, of other settings emptied; a foreign one is refused;
* a ladder left half-trained in ``OUT`` itself (older runs) is moved to ``OUT.work`` and resumed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ..errors import RelinkError
from ..io import atomic_dir, canonical, mark_output, write_json
from ..workdir import KeyedWork, work_path

LADDER_FILE = "ladder.json"
STATE_FILE = "train-state.pt"
OWNER = "train"  # the owner name relink.io.claim_output / mark_output know ladders by


def _read(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / LADDER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_ladder(out_dir: str | os.PathLike) -> dict[str, Any]:
    """``ladder.json`` of a ladder folder, with each rung's ``path`` made absolute."""
    out_dir = Path(out_dir)
    try:
        ladder = json.loads((out_dir / LADDER_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise RelinkError(f"{out_dir}: no readable {LADDER_FILE} ({exc.__class__.__name__})") from None
    for rung in ladder.get("rungs", []):
        rung["path"] = str(out_dir / rung["name"])
    return ladder


class LadderStore:
    """The output ``out_dir`` and the work folder a ladder of ``signature`` is trained in (see module doc)."""

    def __init__(self, out_dir: str | os.PathLike, signature: dict[str, Any], overwrite: bool = False):
        self.out = Path(out_dir)
        self.work = work_path(self.out)
        self.signature = canonical(signature)  # as ladder.json stores it
        self.created = False
        final = _read(self.out)
        self.finished = bool(final and final.get("signature") == self.signature and final.get("complete"))
        if self.finished:
            return
        if final is not None and final.get("signature") != self.signature and not overwrite:
            old = final.get("signature") or {}
            diff = sorted(k for k in self.signature if old.get(k) != self.signature[k])
            raise RelinkError(f"{self.out} holds a ladder trained with other settings (differs in: {', '.join(diff)}); "
                              "choose another --out or pass --overwrite")
        if self.work.exists() or self.work.is_symlink():
            KeyedWork(self.work, {}, self.work / LADDER_FILE, "train", "its rungs").refuse_foreign()
        elif final is not None and final.get("signature") == self.signature:
            os.replace(self.out, self.work)  # a half-trained ladder in OUT itself: resume it as work

    def done(self) -> list[dict[str, Any]]:
        """Rungs already saved in the work folder for this signature that training can continue from."""
        ladder = _read(self.work)
        if ladder is None or ladder.get("signature") != self.signature:
            return []
        rungs = [r for r in ladder.get("rungs", []) if (self.work / r["name"]).is_dir()]
        if rungs and len(rungs) < len(self.signature["save_at"]) and not (self.work / STATE_FILE).is_file():
            return []  # cannot continue without the optimizer state: retrain from the start
        return rungs

    def start(self, done: list[dict[str, Any]]) -> None:
        """Make the work folder ready: kept when resuming ``done``; otherwise emptied (it is relink's own)."""
        if done:
            return
        if self.work.exists():
            if _read(self.work) is not None:
                print(f"relink train: {self.work} held another or unusable run; started afresh", file=sys.stderr)
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        self.created = True

    def write_ladder(self, ladder: dict[str, Any]) -> None:
        write_json(self.work / LADDER_FILE, ladder)

    def finish(self) -> Path:
        """Mark the finished work folder as a ``relink train`` output and rename it to ``out`` in one step."""
        (self.work / STATE_FILE).unlink(missing_ok=True)
        mark_output(self.work, OWNER)
        with atomic_dir(self.out) as tmp:
            os.replace(self.work, tmp)  # a folder renamed over the empty temporary one
        return self.out

    def discard(self) -> None:
        """Remove a work folder this run created (after bad input; an interrupted run keeps its work)."""
        if self.created:
            shutil.rmtree(self.work, ignore_errors=True)
