"""What several results share: the evaluation sets, labelled audit rows, and writing a result folder.

Metric tables carry :data:`relink.tables.METRIC_COLUMNS` plus ``rung`` (ladder position), ``role``
(``internal`` | ``external``) and ``pool`` (``"100"`` ... or ``"full"``). The internal evaluation split must
fill every requested pool; the external cohort is evaluated on the pools it can fill.
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
from ...retrieval.pools import Pools
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
    """:meth:`relink.retrieval.pools.Pools.for_set`: a listed pool of exactly ``n_candidates`` is the full one."""
    return Pools(tuple(pools)).for_set(n_candidates)


def label_table(frame: pd.DataFrame, rung: RungSpec, role: str, pools, n_candidates: int) -> pd.DataFrame:
    """Add ``rung``, ``role`` and ``pool``: ``full`` for the full pool (and the full-pool metrics), else the
    pool size as text (audit with :func:`pools_for`: a cohort whose size is a listed pool has one row)."""
    frame = frame.copy()
    frame.insert(0, "rung", rung.index)
    frame.insert(1, "role", role)
    full = (frame["metric"] != "recall") | (("full" in pools) & (frame["N"] == n_candidates)
                                           & (frame["negatives"] == "random"))
    frame.insert(2, "pool", np.where(full, "full", frame["N"].astype(str)))
    return frame


def audit_rows(ctx: Context, spec: AuditSpec, labelled_only: bool = False,
               per_query: Callable[[RungSpec, str, EmbeddingSet, Any], None] | None = None) -> pd.DataFrame:
    """Audit every rung on every cohort. ``labelled_only`` drops pairs whose report carries no label (counted
    in ``unlabelled_excluded``) for every kind of pool alike. ``per_query(rung, role, es, qv)`` receives each
    audit's per-query values, for the paired contrasts (the tables hold none)."""
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
            result, table = _audit(es, spec, rung, role, clip=role == "external" or labelled_only)
            if per_query is not None:
                per_query(rung, role, es, result.values)
            note_dropped(ctx, result.table, role, rung)
            if labelled_only:
                table["unlabelled_excluded"] = int(unlabelled.sum())
            frames.append(table)
    return pd.concat(frames, ignore_index=True)


def _audit(es: EmbeddingSet, spec: AuditSpec, rung: RungSpec, role: str, clip: bool):
    """The audit of ``es`` at the pools it fills, and its table labelled (:func:`label_table`)."""
    from ...api.audit import audit

    result = audit(es, spec.but(pools=pools_for(spec.pools, len(es)), pools_clip=clip), model=rung.name,
                   cohort=str(es.rows["cohort"].iloc[0]))
    return result, label_table(result.table, rung, role, spec.pools, len(es))


def contrast_row(c, **labels: Any) -> dict[str, Any]:
    """One row of a result's ``contrasts.parquet``: what was compared (``labels``), then the
    :class:`relink.retrieval.contrast.Contrast` of ``b`` against ``a`` (``ci_level``: its confidence level)."""
    return {**labels, "kind": c.kind, "a": c.a, "b": c.b, "value": c.value, "ci_low": c.ci_low, "ci_high": c.ci_high,
            "n_queries": c.n_queries, "n_patients": c.n_patients, "ci_level": c.level}


def recall_contrasts(ctx: Context, states: dict[Any, EmbeddingSet], pairs) -> list[dict[str, Any]]:
    """Paired relative changes of Recall@1 (image to report, study level, random pools) at the headline pool
    the rows fill. ``states``: each state's set of the same rows, the first naming the cohort; ``pairs``:
    ``(contrast, epsilon, a, b)``, ``b`` against ``a`` (a state that is an epsilon is shown as ``ε = ...``)."""
    from ...retrieval.audit import audit_queries
    from ...retrieval.contrast import contrast_of_audits

    first = next(iter(states.values()))
    n = min(ctx.profile.n_target, len(first))
    spec = audit_spec(ctx, ks=(1,), directions=("image_to_report",), levels=("study",), negatives=("random",),
                      pools=(n,))
    qv = {state: audit_queries(es, spec) for state, es in states.items()}
    cohort = str(first.rows["cohort"].iloc[0])
    rows = []
    for name, eps, a, b in pairs:
        c = contrast_of_audits(qv[a], qv[b], "relative", random_state=ctx.profile.audit_seed,
                               direction="image_to_report", N=n, K=1)
        rows.append({"contrast": name, "cohort": cohort, "epsilon": np.nan if eps is None else float(eps),
                     "direction": "image_to_report", "N": n, "K": 1, "a": _state(a), "b": _state(b),
                     "value": c.value, "ci_low": c.ci_low, "ci_high": c.ci_high, "n_patients": c.n_patients})
    return rows


def _state(state) -> str:
    return state if isinstance(state, str) else f"ε = {state:g}"


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
    spec = audit_spec(ctx, ks=(1,), directions=("image_to_report",), levels=("study",), negatives=("random",))
    frames = []
    for role, es in sets.items():
        _, table = _audit(es, spec, rung, role, clip=role == "external")
        table = table[table["metric"] == "recall"]
        frames.append(table.assign(state=state, epsilon=np.nan if epsilon is None else float(epsilon)))
    return pd.concat(frames, ignore_index=True)
