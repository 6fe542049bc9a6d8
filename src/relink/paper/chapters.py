"""The chapters of the paper and the result tables each one reads.

A chapter is a jupytext percent-format notebook ``notebooks/NN_slug.py``
(paired with ``notebooks/NN_slug.ipynb`` through ``jupytext.toml``), executed
by papermill into ``book/chapters/NN_slug.ipynb``. Its inputs, whose hash
decides whether it runs again, are: its source, the relink source, the
profile parameters, and the artifact ids of the result tables it lists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import RelinkError
from ..provenance import REPO_ROOT

# Overridable so that tests (and anyone previewing a variant) can run the paper on a
# copy of the book without touching the repository's executed chapters.
NOTEBOOK_DIR = Path(os.environ.get("RELINK_NOTEBOOK_DIR", REPO_ROOT / "notebooks"))
BOOK_DIR = Path(os.environ.get("RELINK_BOOK_DIR", REPO_ROOT / "book"))
CHAPTER_DIR = BOOK_DIR / "chapters"


@dataclass(frozen=True)
class Chapter:
    number: str
    slug: str
    title: str
    results: tuple[str, ...]

    @property
    def stem(self) -> str:
        return f"{self.number}_{self.slug}"

    @property
    def source(self) -> Path:
        return NOTEBOOK_DIR / f"{self.stem}.py"

    @property
    def output(self) -> Path:
        return CHAPTER_DIR / f"{self.stem}.ipynb"


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("01", "cohorts", "Cohorts", ("cohorts",)),
    Chapter("02", "relinkage", "Re-linkage across the specialization ladder", ("audit",)),
    Chapter("03", "hard_negatives", "Pathology-matched hard negatives", ("hard_negatives",)),
    Chapter("04", "mitigation", "Differentially private mitigation", ("dp",)),
    Chapter("05", "utility", "What the mitigated model keeps", ("utility",)),
    Chapter("06", "claims", "The study's claims, reproduced", ("cohorts", "audit", "hard_negatives", "dp", "utility")),
)


def select(names: list[str] | None) -> list[Chapter]:
    """Chapters by number (``02``, ``2``), slug or stem; all when ``names`` is empty."""
    if not names:
        return list(CHAPTERS)
    out = []
    for name in names:
        for part in str(name).split(","):
            part = part.strip()
            if not part:
                continue
            match = [c for c in CHAPTERS if part in (c.number, c.number.lstrip("0"), c.slug, c.stem)]
            if not match:
                choices = ", ".join(f"{c.number} ({c.slug})" for c in CHAPTERS)
                raise RelinkError(f"unknown chapter {part!r}; chapters: {choices}")
            out += [c for c in match if c not in out]
    return sorted(out, key=lambda c: c.number)
