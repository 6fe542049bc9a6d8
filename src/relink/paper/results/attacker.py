"""Result ``attacker``: the stronger attacker of the chapter beyond the study (confident re-links).

An attacker who links a released image to its top candidate only when that candidate's score clears a
threshold t exposes fewer images than Recall@1 counts, but exposes them *with confidence*. For every
rung of the ladder, and for the strongest rung's DP heads (the headline run of result ``dp``), this
result audits the held-out internal split at the profile's headline pool N (image to report, study
level) with confident re-links (:func:`relink.api.audit.audit`, ``confident`` targets 0.9 and 0.99).

Tables

* ``confident.parquet``: the audit's metric rows ``relinked_best`` (an attacker who knows the best
  threshold) and ``relinked_calibrated`` (threshold calibrated on held-apart labelled pairs), one per
  ``precision_target``, with ``rung``, ``role`` (``internal``), ``pool`` and ``state`` (``before`` |
  ``dp`` | ``retrained``: heads trained without DP on the external cohort's pairs, the public set of an
  attacker who holds the strongest rung's trunk; absent on a profile without an external cohort) and the metric columns (``value``: expected share of the queries re-linked correctly at
  precision >= the target; ``n_queries``; patient-clustered ``ci_low``/``ci_high``; ``chance``);
* ``curves.parquet``: the attacker's precision-recall curve over t (``direction, level, N, threshold,
  expected_correct, expected_links, precision, recall``) with ``model``, ``rung`` and ``state``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..stages import Context, ladder
from . import Result
from .common import audit_spec, eval_set, finish, headline_sets

#: the precision an attacker must reach before a link counts as confident
TARGETS = (0.9, 0.99)
DIRECTION, LEVEL = "image_to_report", "study"


def declared_pool(ctx: Context, n_rows: int) -> int:
    """The declared pool N of the chapter: the profile's headline pool, or the whole split when smaller."""
    return int(min(ctx.profile.n_target, n_rows))


def confident(ctx: Context, es, model: str, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Confident re-links of ``es`` at pool ``n``: (the metric rows of the confident targets, the curve)."""
    from ...api.audit import audit

    spec = audit_spec(ctx, ks=(1,), directions=(DIRECTION,), levels=(LEVEL,), negatives=("random",), pools=(n,),
                      confident=TARGETS)
    found = audit(es, spec)
    table = found.table
    rows = table[table["metric"].isin(("relinked_best", "relinked_calibrated"))].copy()
    rows["model"] = model
    curve = found.curve
    curve = curve[(curve["direction"] == DIRECTION) & (curve["level"] == LEVEL) & (curve["N"] == n)].copy()
    curve.insert(0, "model", model)
    return rows, curve


def retrained_set(ctx: Context, rung):
    """The held-out internal rows re-projected by heads trained without DP on the external cohort's pairs (the
    public set) over the strongest rung's trunk, from a random start seeded by the profile's DP seed."""
    from ...api.train_heads import train_heads
    from ...dp.retrain import RetrainSpec

    _, full, sets = headline_sets(ctx, require_trunk=True)
    target = full.split(ctx.profile.eval_split)
    return train_heads(sets["external"], target, RetrainSpec(seed=ctx.profile.dp_seed), progress=False).embeddings


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    from ...report import mitigation
    from .dp import HEADLINE

    rows, curves = [], []
    for rung in ladder(ctx):
        es = eval_set(ctx, rung, "internal")
        n = declared_pool(ctx, len(es))
        table, curve = confident(ctx, es, rung.name, n)
        rows.append(table.assign(rung=rung.index, role="internal", pool=str(n), state="before"))
        curves.append(curve.assign(rung=rung.index, state="before"))
    # the strongest rung's DP heads (headline run of result dp), on the same rows
    rung, _, sets = headline_sets(ctx, require_trunk=False)
    es = sets["internal"]
    dp_set = mitigation.resolve(str(upstream["dp"] / HEADLINE), es, split=ctx.profile.eval_split).es
    n = declared_pool(ctx, len(es))
    table, curve = confident(ctx, dp_set, rung.name, n)
    rows.append(table.assign(rung=rung.index, role="internal", pool=str(n), state="dp"))
    curves.append(curve.assign(rung=rung.index, state="dp"))
    # the attacker who re-trains heads without DP on public pairs over the same trunk: the external cohort
    if "external" in sets:
        retrained = retrained_set(ctx, rung)
        table, curve = confident(ctx, retrained, rung.name, n)
        rows.append(table.assign(rung=rung.index, role="internal", pool=str(n), state="retrained"))
        curves.append(curve.assign(rung=rung.index, state="retrained"))
    finish(tmp, ctx, "attacker", {"confident.parquet": pd.concat(rows, ignore_index=True),
                                  "curves.parquet": pd.concat(curves, ignore_index=True)},
           {"targets": list(TARGETS), "epsilon": ctx.profile.epsilon})


RESULT = Result("attacker", build, upstream=("dp",), source=("retrieval", "api", "dp", "report/mitigation.py"),
                fields=("eval_split", "pools", "ks", "n_boot", "audit_seed", "epsilon", "dp_seed"))
