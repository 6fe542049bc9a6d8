"""What several results share: the evaluation sets, labelled audit rows, and writing a result folder.

Metric tables of the paper carry :data:`relink.tables.METRIC_COLUMNS` plus
``rung`` (ladder position), ``role`` (``internal`` | ``external``) and
``pool`` (``"100"`` ... or ``"full"``). The internal evaluation split must
fill every requested pool (a profile that asks for N = 10,000 gets a real
pool of 10,000 or an error); the external cohort, often smaller, is
evaluated on the pools it can fill.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ...embeddings import EmbeddingSet
from ...embeddings import load as load_embeddings
from ...io import write_json
from ...provenance import stamp
from ...retrieval.spec import AuditSpec
from ...tables import write_table
from ..stages import Context, RungSpec, cohort_ids, embeddings, ladder


def audit_spec(ctx: Context, **changes: Any) -> AuditSpec:
    """The profile's audit settings as the one spec the audit takes."""
    p = ctx.profile
    return AuditSpec(pools=p.pools, ks=p.ks, n_boot=p.n_boot, random_state=p.audit_seed).but(**changes)


def finish(tmp: Path, ctx: Context, name: str, tables: dict[str, pd.DataFrame], extra: dict[str, Any] | None = None) -> None:
    """Write a result's tables with provenance, and its ``provenance.json``."""
    prov = stamp(profile=ctx.profile.name, result=name, cohorts=cohort_ids(ctx), **(extra or {}))
    for file, frame in tables.items():
        write_table(frame.reset_index(drop=True), tmp / file, prov)
    write_json(tmp / "provenance.json", prov)


def eval_set(ctx: Context, rung: RungSpec, role: str) -> EmbeddingSet | None:
    """The set a rung is audited on: the internal evaluation split, or the whole external cohort."""
    path = embeddings(ctx, rung, role)
    if path is None:
        return None
    es = load_embeddings(path)
    return es.split(ctx.profile.eval_split) if role == "internal" else es


def pools_for(pools, n_candidates: int) -> tuple:
    """The pools to audit on ``n_candidates`` candidates: a finite pool of exactly that size *is* the
    full pool, so when ``full`` is requested it is audited once, as ``full`` (each row one pool)."""
    if "full" not in pools:
        return tuple(pools)
    return tuple(p for p in pools if p == "full" or int(p) != n_candidates)


def label_table(frame: pd.DataFrame, rung: RungSpec, role: str, pools, n_candidates: int) -> pd.DataFrame:
    """Add ``rung``, ``role`` and ``pool``: ``full`` for the full pool (and the full-pool metrics MRR and
    median rank), else the pool size as text. Labelled by what the row is, not by N's value: audit
    with :func:`pools_for` so that a cohort whose size is a listed pool has one row for that pool."""
    frame = frame.copy()
    frame.insert(0, "rung", rung.index)
    frame.insert(1, "role", role)
    full = (frame["metric"] != "recall") | (("full" in pools) & (frame["N"] == n_candidates)
                                           & (frame["negatives"] == "random"))
    frame.insert(2, "pool", np.where(full, "full", frame["N"].astype(str)))
    return frame


def audit_rows(ctx: Context, spec: AuditSpec, labelled_only: bool = False,
               per_query: Callable[[RungSpec, str, EmbeddingSet, Any], None] | None = None) -> pd.DataFrame:
    """Audit every rung on every cohort. ``labelled_only`` drops pairs whose report carries no
    label at all (they belong to no pathology group), for every kind of negatives alike so that
    random and matched pools are compared on the same queries; the count is the column
    ``unlabelled_excluded``. ``per_query(rung, role, es, qv)``, when given, receives each audit's
    per-query values (:class:`relink.retrieval.values.QueryValues` of ``es``'s rows) before they are
    dropped: the paired contrasts of a result are computed from them (the tables hold no per-query value)."""
    from ...api.audit import audit

    frames = []
    for rung in ladder(ctx):
        for role in ("internal", "external"):
            es = eval_set(ctx, rung, role)
            if es is None:
                continue
            unlabelled = np.isnan(es.labels()).all(axis=1)
            if labelled_only:
                es = es.subset(~unlabelled)
            # the labelled subset of the held-out split may not fill a pool the whole split fills
            clip = role == "external" or labelled_only
            result = audit(es, spec.but(pools=pools_for(spec.pools, len(es)), pools_clip=clip), model=rung.name,
                           cohort=str(es.rows["cohort"].iloc[0]))
            table = result.table
            if per_query is not None:
                per_query(rung, role, es, result.values)
            note_dropped(ctx, table, role, rung)
            table = label_table(table, rung, role, spec.pools, len(es))
            if labelled_only:
                table["unlabelled_excluded"] = int(unlabelled.sum())
            frames.append(table)
    return pd.concat(frames, ignore_index=True)


def contrast_row(c, **labels: Any) -> dict[str, Any]:
    """One row of a result's ``contrasts.parquet``: what was compared (``labels``: ``contrast``, ``rung``,
    ``role``, ``cohort``, ``direction``, ``level``, ``N``, ``K``, ...), then the
    :class:`relink.retrieval.contrast.Contrast` of ``b`` against ``a`` (``kind``, ``a``, ``b``, ``value``,
    ``ci_low``, ``ci_high``, ``n_queries``, ``n_patients``, ``ci_level``: its confidence level)."""
    return {**labels, "kind": c.kind, "a": c.a, "b": c.b, "value": c.value, "ci_low": c.ci_low, "ci_high": c.ci_high,
            "n_queries": c.n_queries, "n_patients": c.n_patients, "ci_level": c.level}


def note_dropped(ctx: Context, table: pd.DataFrame, role: str, rung: RungSpec) -> None:
    """Say once, as a sentence, which pools a cohort too small for them was audited without."""
    dropped = table.attrs.get("audit", {}).get("pools_dropped") or []
    if dropped and ctx.progress and rung.index == 1:
        sizes = ", ".join(f"{int(n):,}" for n in dropped)
        print(f"note: the {role} cohort has {table.attrs['audit']['n_pairs']:,} pairs, so pools of {sizes} are left "
              "out for it (its full pool is reported instead)", file=sys.stderr)


def headline_sets(ctx: Context, require_trunk: bool = True) -> tuple[RungSpec, EmbeddingSet, dict[str, EmbeddingSet]]:
    """The strongest rung, its whole internal set (with trunks), and the sets to evaluate by role."""
    rung = ladder(ctx)[-1]
    full = load_embeddings(embeddings(ctx, rung, "internal"), require_trunk=require_trunk)
    sets = {"internal": full.split(ctx.profile.eval_split)}
    ext = embeddings(ctx, rung, "external")
    if ext is not None:
        sets["external"] = load_embeddings(ext, require_trunk=require_trunk)
    return rung, full, sets


def recall_rows(ctx: Context, rung: RungSpec, sets: dict[str, EmbeddingSet], state: str,
                epsilon: float | None) -> pd.DataFrame:
    """Recall@1 of each evaluation set at every pool, image to report, study level, random pools."""
    from ...api.audit import audit

    spec = audit_spec(ctx, ks=(1,), directions=("image_to_report",), levels=("study",), negatives=("random",))
    frames = []
    for role, es in sets.items():
        table = audit(es, spec.but(pools=pools_for(spec.pools, len(es)), pools_clip=role == "external"), model=rung.name,
                      cohort=str(es.rows["cohort"].iloc[0])).table
        table = label_table(table, rung, role, spec.pools, len(es))
        table = table[table["metric"] == "recall"]
        frames.append(table.assign(state=state, epsilon=np.nan if epsilon is None else float(epsilon)))
    return pd.concat(frames, ignore_index=True)
