"""What the front doors share: the report's result type, and sets given as folders.

A result never prints; ``notes`` are sentences a caller may show. Nothing in a result holds an identifier
of the audited rows, report text or a local path, apart from the ``inputs`` a result keeps to guard its
own writes (never written).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..embeddings import EmbeddingSet


def with_trunk(value) -> EmbeddingSet:
    """``value`` itself, or the set in that folder (which must hold trunk features)."""
    from ..embeddings import load

    return value if isinstance(value, EmbeddingSet) else load(value, require_trunk=True)


@dataclass(frozen=True)
class ReportResult:
    """The custodian's report, checked by the leak scanner and ready to write.

    ``document``: the ``relink-report/2`` document (:mod:`relink.report.schema`); ``html`` and ``json`` its
    page and JSON text; ``table``: the tidy metric table the report was built from (every panel model's rows,
    ``model`` telling them apart); ``spec``: the report spec as declared; ``notes``: what the caller should know;
    ``inputs``: the ``(flag, path)`` inputs, so :meth:`write` never lands on one.
    """

    document: dict[str, Any]
    html: str
    json: str
    table: pd.DataFrame
    spec: Any
    notes: tuple[str, ...] = ()
    inputs: tuple[tuple[str, Any], ...] = field(default=(), repr=False)

    @property
    def verdict(self) -> str:
        """``low``, ``inconclusive``, ``elevated`` or ``high`` (the worst over the attacker panel)."""
        return self.document["verdict"]["level"]

    @property
    def decision(self) -> str:
        """What the verdict means for the release, in words (for example ``release as declared``)."""
        return self.document["verdict"]["decision"]

    @property
    def headline(self) -> str:
        return self.document["headline"]["sentence"]

    def reaches(self, level: str | None) -> bool:
        """Whether the verdict reaches ``level`` (``elevated`` or ``high``; inconclusive counts as elevated)."""
        from ..report.threat import reached

        return reached(self.verdict, level)

    def write(self, page: str | Path, json: str | Path | None = None, audit: str | Path | None = None,
              overwrite: bool = False) -> list[Path]:
        """Write the page, and the JSON and the metric table when given, through the output guard."""
        from .report import write

        return write(self, page, json, audit, overwrite)
