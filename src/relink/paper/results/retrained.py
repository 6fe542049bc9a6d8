"""Result ``retrained``: the attacker who re-trains the heads on public pairs, beside the DP heads.

An attacker holding the strongest rung's trunks and the external cohort
(public pairs) trains heads without DP, from a random start
(:func:`relink.train_heads`), and re-links the held-out internal rows with
them. On those rows, three states of the same trunks:

* ``original``: the rung's own heads;
* ``dp``: the headline DP heads of result ``dp`` (ε = the profile's epsilon);
* ``retrained``: the attacker's heads, trained on the external cohort only.

Tables

* ``effects.parquet``: Recall@1 of each state at every pool the rows fill
  (columns of :func:`relink.paper.results.common.recall_rows`, ``state`` as
  above);
* ``contrasts.parquet``: paired contrasts (relative change of Recall@1 at the
  headline pool, :mod:`relink.retrieval.contrast`, same rows, ``b`` against
  ``a``): ``retrained_vs_original``, ``retrained_vs_dp``, ``dp_vs_original``.
  :func:`relink.paper.dp_effects.retrained_sentence` says what they mean;
* ``heads.safetensors``: the attacker's heads (trained without DP: no privacy guarantee), which result
  ``attacker`` applies to the same rows.

A profile without an external cohort has no public set: both tables are
empty and the sentence says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..stages import Context
from . import Result
from .common import audit_spec, finish, headline_sets, recall_rows
from .dp import RELEASE

#: (name, a, b): b against a
CONTRASTS = (("retrained_vs_original", "original", "retrained"), ("retrained_vs_dp", "dp", "retrained"),
             ("dp_vs_original", "original", "dp"))
#: the attacker's heads (no privacy guarantee), absent without an external cohort
HEADS = "heads.safetensors"
COLUMNS = ("contrast", "cohort", "epsilon", "direction", "N", "K", "a", "b", "value", "ci_low", "ci_high",
           "n_patients")


def retrain_spec(ctx: Context):
    """The attacker's settings: the mitigation's batch size and temperature, its own defaults otherwise."""
    from ...dp.retrain import RetrainSpec

    p = ctx.profile
    return RetrainSpec(batch_size=max(2, p.dp_batch_size), temperature=p.dp_temperature, seed=p.dp_seed)


def contrast_rows(ctx: Context, states: dict, epsilon: float) -> pd.DataFrame:
    """The paired contrasts of :data:`CONTRASTS` on the held-out internal rows, at the headline pool."""
    from ...retrieval.audit import audit_queries
    from ...retrieval.contrast import contrast_of_audits

    first = states["original"]
    n = min(ctx.profile.n_target, len(first))
    spec = audit_spec(ctx, ks=(1,), directions=("image_to_report",), levels=("study",), negatives=("random",),
                      pools=(n,))
    qv = {state: audit_queries(es, spec) for state, es in states.items()}
    cohort = str(first.rows["cohort"].iloc[0])
    rows = []
    for name, a, b in CONTRASTS:
        c = contrast_of_audits(qv[a], qv[b], "relative", random_state=ctx.profile.audit_seed,
                               direction="image_to_report", N=n, K=1)
        eps = float(epsilon) if "dp" in (a, b) else np.nan
        rows.append({"contrast": name, "cohort": cohort, "epsilon": eps, "direction": "image_to_report",
                     "N": n, "K": 1, "a": a, "b": b, "value": c.value, "ci_low": c.ci_low, "ci_high": c.ci_high,
                     "n_patients": c.n_patients})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    from ...api.train_heads import train_heads
    from ...dp.apply import apply_heads, load_heads, save_heads

    rung, _, sets = headline_sets(ctx)
    target = sets["internal"]
    extra = {"model": rung.name}
    if "external" not in sets:
        tables = {"effects.parquet": pd.DataFrame(columns=["state"]), "contrasts.parquet": pd.DataFrame(columns=COLUMNS)}
        finish(tmp, ctx, "retrained", tables, {**extra, "public": None})
        return
    attack = train_heads(sets["external"], target, retrain_spec(ctx), progress=ctx.progress)
    dp_heads = load_heads(upstream["dp"] / RELEASE / "heads.safetensors")
    states = {"original": target, "dp": apply_heads(target, dp_heads), "retrained": attack.embeddings}
    eps = ctx.profile.epsilon
    effects = pd.concat([recall_rows(ctx, rung, {"internal": es}, state, eps if state == "dp" else None)
                         for state, es in states.items()], ignore_index=True)
    record = {k: attack.record[k] for k in ("attacker", "spec", "start", "loss", "public_pairs", "heads_fingerprint")}
    save_heads(attack.heads, tmp / HEADS)  # the attacker of result attacker, not trained twice
    finish(tmp, ctx, "retrained", {"effects.parquet": effects, "contrasts.parquet": contrast_rows(ctx, states, eps)},
           {**extra, "public": "the external cohort", "attacker": record})


RESULT = Result("retrained", build, upstream=("dp",), source=("dp", "retrieval", "api/train_heads.py"),
                fields=("eval_split", "pools", "ks", "n_boot", "audit_seed", "epsilon", "dp_batch_size",
                        "dp_temperature", "dp_seed"))
