"""Result ``utility``: what the mitigated heads keep — linear probe, zero-shot AUROC, member gap.

``utility.parquet``: state (``before`` | ``dp``: result ``dp``'s headline run), features, metric, value,
interval, labels used, for the strongest model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...embeddings import EmbeddingSet
from ...embeddings import load as load_embeddings
from ..stages import Context, load
from . import Result
from .common import finish, headline_sets
from .dp import HEADLINE, RELEASE


def _rows(ctx: Context, es: EmbeddingSet, loaded, text_head, state: str) -> list[dict[str, Any]]:
    """The state's rows from :func:`relink.api.probe.probe`'s table."""
    from ...api.probe import ProbeSpec, probe

    p = ctx.profile
    n_gap = min(p.n_target, int((es.rows["split"] == "train").sum()), int((es.rows["split"] == p.eval_split).sum()))
    spec = ProbeSpec(features="both" if state == "before" else "projected", zeroshot=True, member_gap=n_gap,
                     seed=p.probe_seed, zeroshot_split=p.eval_split, nonmembers=p.eval_split, gap_seed=p.audit_seed,
                     gap_boot=p.n_boot, gap_fit=True)
    table = probe([es], spec, model=loaded, text_heads=[text_head], names=[state]).table
    rows = []
    for _, r in table[(table["utility"] == "linear_probe") & (table["label"] == "macro")].iterrows():
        rows.append({"state": state, "features": r["features"], "metric": "linear_probe_macro_auroc",
                     "value": float(r["value"]), "ci_low": np.nan, "ci_high": np.nan, "n_labels": int(r["n_labels"])})
    zm = table[(table["utility"] == "zeroshot") & (table["label"] == "macro")].iloc[0]
    rows.append({"state": state, "features": "projected", "metric": "zero_shot_macro_auroc", "value": float(zm["value"]),
                 "ci_low": np.nan, "ci_high": np.nan, "n_labels": int(zm.get("n_labels", np.nan))})
    for _, r in table[table["utility"] == "member_gap"].iterrows():
        metric = "member_gap" if r["label"] == "gap" else f"recall_{r['label']}"
        rows.append({"state": state, "features": "projected", "metric": metric, "value": float(r["value"]),
                     "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]), "n_labels": np.nan,
                     "matched_on": r["matched_on"]})
    return rows


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    from ...dp.apply import load_heads
    from ...models.heads import extract_heads

    rung, full, _ = headline_sets(ctx)
    loaded = load(rung)
    rows = _rows(ctx, full, loaded, extract_heads(loaded.model).text, "before")
    mitigated = upstream["dp"] / HEADLINE
    heads = load_heads(upstream["dp"] / RELEASE / "heads.safetensors")
    rows += _rows(ctx, load_embeddings(mitigated / "embeddings" / "internal"), loaded, heads.text, "dp")
    finish(tmp, ctx, "utility", {"utility.parquet": pd.DataFrame(rows)}, {"model": rung.name})


RESULT = Result("utility", build, upstream=("dp",), source=("utility", "retrieval", "models", "api/probe.py"),
                fields=("eval_split", "pools", "ks", "n_boot", "audit_seed", "probe_seed", "epsilon"))
