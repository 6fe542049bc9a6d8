"""Result ``hard_negatives``: random vs pathology-matched vs positive-set-matched pools, every rung.

Table ``hard_negatives.parquet`` (study level). Pairs whose report carries no
label belong to no pathology group; they are left out for every kind of pool
alike (``unlabelled_excluded``).
"""

from __future__ import annotations

from pathlib import Path

from ..stages import Context
from . import Result
from .common import audit_rows, audit_spec, finish


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    spec = audit_spec(ctx, levels=("study",), negatives=("random", "pathology_matched", "positive_set_matched"))
    finish(tmp, ctx, "hard_negatives", {"hard_negatives.parquet": audit_rows(ctx, spec, labelled_only=True)})


RESULT = Result("hard_negatives", build, fields=("eval_split", "pools", "ks", "n_boot", "audit_seed"),
                source=("retrieval",))
