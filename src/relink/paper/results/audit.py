"""Result ``audit``: re-linkage of every rung on every cohort, both directions, study and patient level.

Table ``audit.parquet``: random pools, every pool and K of the profile, with
patient-bootstrap intervals (columns: :mod:`relink.paper.results.common`).
"""

from __future__ import annotations

from pathlib import Path

from ..stages import Context, ladder
from . import Result
from .common import audit_rows, audit_spec, finish


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    table = audit_rows(ctx, audit_spec(ctx, levels=("study", "patient")))
    finish(tmp, ctx, "audit", {"audit.parquet": table}, {"ladder": [r.name for r in ladder(ctx)]})


RESULT = Result("audit", build, fields=("eval_split", "pools", "ks", "n_boot", "audit_seed"), source=("retrieval",))
