"""The chapters of the paper, found from the notebooks themselves.

A chapter is a jupytext notebook ``notebooks/NN_slug.py``, executed by papermill into
``book/chapters/NN_slug.ipynb``. The results it reads are declared once, in its header::

    # ---
    # jupyter:
    #   ...
    #   relink:
    #     results: [audit]
    # ---

(``inputs: [path, ...]`` adds repository files it reads), and its title is its first ``# Heading``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import RelinkError
from ..provenance import REPO_ROOT

# overridable: tests run the paper on a copy of the book
NOTEBOOK_DIR = Path(os.environ.get("RELINK_NOTEBOOK_DIR", REPO_ROOT / "notebooks"))
BOOK_DIR = Path(os.environ.get("RELINK_BOOK_DIR", REPO_ROOT / "book"))
CHAPTER_DIR = BOOK_DIR / "chapters"
_STEM = re.compile(r"^(\d\d)_([a-z0-9_]+)$")


@dataclass(frozen=True)
class Chapter:
    number: str
    slug: str
    title: str
    results: tuple[str, ...]
    inputs: tuple[str, ...] = ()  # repository files it reads, relative to the repository root

    @property
    def stem(self) -> str:
        return f"{self.number}_{self.slug}"

    @property
    def source(self) -> Path:
        return NOTEBOOK_DIR / f"{self.stem}.py"

    @property
    def output(self) -> Path:
        return CHAPTER_DIR / f"{self.stem}.ipynb"


def read_chapter(path: Path) -> Chapter:
    """A chapter from its notebook source: number and slug from the name, results from the header."""
    import yaml

    m = _STEM.match(path.stem)
    if not m:
        raise RelinkError(f"{path.name}: a chapter notebook is named NN_slug.py")
    text = path.read_text()
    header = re.match(r"# ---\n(.*?)\n# ---\n", text, flags=re.S)
    meta = yaml.safe_load("\n".join(line[2:] for line in header.group(1).splitlines())) if header else {}
    declared = ((meta or {}).get("jupyter") or {}).get("relink") or {}
    results = declared.get("results")
    if results is None:  # an empty list is a chapter that reads no result (e.g. measured costs)
        raise RelinkError(f"{path.name}: its header names no results (jupyter: relink: results: [...])")
    title = re.search(r"^# # (.+)$", text, flags=re.M)
    return Chapter(m.group(1), m.group(2), title.group(1).strip() if title else m.group(2), tuple(results),
                   tuple(declared.get("inputs") or ()))


def chapters() -> tuple[Chapter, ...]:
    """Every chapter notebook in ``notebooks/``, in number order."""
    return tuple(read_chapter(p) for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py")))


def chapter(name: str) -> Chapter:
    """One chapter by number (``02``, ``2``), slug or stem."""
    found = select([name])
    if len(found) != 1:
        raise RelinkError(f"{name!r} names {len(found)} chapters")
    return found[0]


def select(names: list[str] | None) -> list[Chapter]:
    """Chapters by number (``02``, ``2``), slug or stem; all when ``names`` is empty."""
    every = chapters()
    if not names:
        return list(every)
    out = []
    for name in names:
        for part in str(name).split(","):
            part = part.strip()
            if not part:
                continue
            match = [c for c in every if part in (c.number, c.number.lstrip("0"), c.slug, c.stem)]
            if not match:
                choices = ", ".join(f"{c.number} ({c.slug})" for c in every)
                raise RelinkError(f"unknown chapter {part!r}; chapters: {choices}")
            out += [c for c in match if c not in out]
    return sorted(out, key=lambda c: c.number)
