"""Result ``retrained``: the attacker who re-trains the heads on public pairs, beside the DP heads.

An attacker holding the strongest rung's trunks and the external cohort's pairs trains heads without DP
(:func:`relink.train_heads`). On the held-out internal rows, three states of the same trunks: ``original``
(the rung's heads), ``dp`` (result ``dp``'s headline heads) and ``retrained`` (the attacker's).
``effects.parquet``: Recall@1 of each state (:func:`.common.recall_rows`); ``contrasts.parquet``: the
paired relative changes of :data:`CONTRASTS` at the headline pool; ``heads.safetensors``: the attacker's
heads (no privacy guarantee), for result ``attacker``. Without an external cohort both tables are empty.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..stages import Context
from . import Result
from .common import finish, headline_sets, recall_contrasts, recall_rows
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
    pairs = [(name, epsilon if "dp" in (a, b) else None, a, b) for name, a, b in CONTRASTS]
    return pd.DataFrame(recall_contrasts(ctx, states, pairs), columns=list(COLUMNS))


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
