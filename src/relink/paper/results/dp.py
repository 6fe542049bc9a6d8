"""Result ``dp``: the strongest model's heads retrained with DP at every epsilon of the profile.

Tables ``effects.parquet`` (Recall@1 per state ``before`` | ``dp`` |
``non_private``, epsilon, cohort and pool) and ``sweep.parquet`` (the privacy
record of each run); ``privacy.json`` (the headline run's public record) and
``headline-heads/``, the headline run written exactly as ``relink mitigate``
writes its output (heads, privacy record, checkpoint, re-projected sets), so
that ``relink report --mitigated`` reads it like any other.

Every run goes through the one mitigation service (:func:`relink.dp.service.sweep`)
with reproducible noise (``dp_seed``): the paper is a study of many runs on
the same private split, and its heads are marked not for release.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...io import write_json
from ..stages import Context, load
from . import Result
from .common import finish, headline_sets, recall_rows

#: The privacy record published per run (the sweep table's columns, in order; ``seed`` is the noise
#: seed, published because the paper's runs use reproducible noise: see ``for_release``).
PUBLIC_PRIVACY_FIELDS = ("epsilon", "target_epsilon", "delta", "accountant", "prv_epsilon", "rdp_epsilon",
                         "noise_multiplier", "clip_norm", "sample_rate", "expected_batch_size", "epochs", "steps",
                         "privacy_unit", "n_units", "n_bank", "lr", "temperature", "grad_sample_mode", "seed",
                         "private", "for_release", "release_note")


#: the folder of the headline run (a `relink mitigate` output; reports name it)
HEADLINE = "headline-heads"


def mitigation_spec(ctx: Context):
    from ...dp.spec import MitigationSpec

    p = ctx.profile
    return MitigationSpec(epsilon=p.epsilon, delta=p.delta, accountant=p.accountant, clip_norm=p.dp_clip_norm,
                          epochs=p.dp_epochs, batch_size=p.dp_batch_size, lr=p.dp_lr, temperature=p.dp_temperature,
                          privacy_unit=p.dp_privacy_unit, reproducible_noise=p.dp_seed)


def _public(report: dict) -> dict:
    return {k: report.get("noise_seed" if k == "seed" else k) for k in PUBLIC_PRIVACY_FIELDS}


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    from ...dp.apply import apply_heads
    from ...dp.service import Mitigation, sweep, write

    p = ctx.profile
    rung, full, sets = headline_sets(ctx)
    loaded = load(rung)
    spec = mitigation_spec(ctx)
    train, bank = full.split("train"), full.split("validate")
    frames = [recall_rows(ctx, rung, sets, "before", None)]
    rows, headline = [], None
    epsilons = sorted({e for e in p.epsilons if e is not None} | {p.epsilon}) + ([None] if None in p.epsilons else [])
    for eps, heads, report in sweep(train, bank, spec, epsilons, loaded, evaluated=list(sets.items()),
                                    progress=ctx.progress):
        private = eps is not None
        after = {role: apply_heads(es, heads) for role, es in sets.items()}
        frames.append(recall_rows(ctx, rung, after, "dp" if private else "non_private", eps))
        rows.append({"setting": f"ε = {eps:g}" if private else "no DP", **_public(report)})
        if private and eps == p.epsilon:
            headline = (heads, report, spec.but(epsilon=eps, private=True))
    heads, report, run_spec = headline
    public = _public(report)
    keep = [("internal", full)] + [(role, es) for role, es in sets.items() if role != "internal"]
    write(Mitigation(heads, {**report, "model": rung.name}, run_spec, loaded, keep), tmp / HEADLINE)
    write_json(tmp / "privacy.json", public)
    finish(tmp, ctx, "dp", {"effects.parquet": pd.concat(frames, ignore_index=True), "sweep.parquet": pd.DataFrame(rows)},
           {"model": rung.name, "privacy": public})


RESULT = Result("dp", build, source=("dp", "retrieval", "models"),
                fields=("eval_split", "pools", "ks", "n_boot", "audit_seed", "epsilon", "delta", "accountant",
                        "epsilons", "dp_epochs", "dp_batch_size", "dp_lr", "dp_clip_norm", "dp_temperature",
                        "dp_privacy_unit", "dp_seed"))
