"""Result ``dp``: the strongest model's heads retrained with DP at every epsilon of the profile.

``effects.parquet``: Recall@1 per state ``before`` | ``dp`` | ``non_private``, epsilon, cohort and pool.
``contrasts.parquet``: the paired relative changes of Recall@1 of :data:`CONTRASTS` (``dp_vs_no_dp``: DP's
own effect against the same training without DP). ``sweep.parquet`` and ``audit.parquet``: each run's
privacy record and one-run privacy audit. ``privacy.json``, :data:`RELEASE` and :data:`HEADLINE`: the
headline run's record, release folder and study folder. Every run uses reproducible noise (``dp_seed``):
the paper is a study of many runs on the same private split, and its heads are not for release.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...io import write_json
from ..stages import Context, load
from . import Result
from .common import finish, headline_sets, recall_contrasts, recall_rows

#: The privacy record published per run (the sweep table's columns, in order; ``seed`` is the noise
#: seed, published because the paper's runs use reproducible noise: see ``for_release``).
PUBLIC_PRIVACY_FIELDS = ("epsilon", "target_epsilon", "delta", "accountant", "prv_epsilon", "rdp_epsilon",
                         "noise_multiplier", "clip_norm", "sample_rate", "expected_batch_size", "epochs", "steps",
                         "privacy_unit", "n_units", "n_bank", "lr", "temperature", "grad_sample_mode", "seed",
                         "private", "for_release", "release_reason")


#: the headline run's study folder (a `relink mitigate --study` output: what reports read) and its release folder
HEADLINE = "headline-study"
RELEASE = "headline-release"
#: contrasts of Recall@1 reported for the DP runs (relative change, b against a)
CONTRASTS = ("dp_vs_no_dp", "dp_vs_before", "no_dp_vs_before", "dp_vs_next_epsilon")
#: canaries of each run's privacy audit (added to the private rows, half of them in expectation)
AUDIT_CANARIES = 200


def mitigation_spec(ctx: Context, n_units: int | None = None):
    """The profile's DP settings; delta derived from ``n_units`` private units when the profile leaves it."""
    from ...dp.accounting import default_delta
    from ...dp.spec import MitigationSpec

    p = ctx.profile
    delta = p.delta if p.delta is not None else default_delta(n_units)
    return MitigationSpec(epsilon=p.epsilon, delta=delta, accountant=p.accountant, clip_norm=p.dp_clip_norm,
                          epochs=p.dp_epochs, batch_size=p.dp_batch_size, lr=p.dp_lr, temperature=p.dp_temperature,
                          privacy_unit=p.dp_privacy_unit, reproducible_noise=p.dp_seed)


def _public(report: dict) -> dict:
    return {k: report.get("noise_seed" if k == "seed" else k) for k in PUBLIC_PRIVACY_FIELDS}


def contrast_rows(ctx: Context, sets: dict, state_sets: dict, epsilons: list) -> pd.DataFrame:
    """The paired contrasts of :data:`CONTRASTS` per cohort (``b`` against ``a``)."""
    dp_eps = sorted(e for e in epsilons if e is not None)
    pairs = [("dp_vs_no_dp", e, "no_dp", e) for e in dp_eps if None in epsilons]
    pairs += [("dp_vs_before", e, "before", e) for e in dp_eps]
    pairs += [("no_dp_vs_before", None, "before", "no_dp")] if None in epsilons else []
    pairs += [("dp_vs_next_epsilon", lo, hi, lo) for lo, hi in zip(dp_eps, dp_eps[1:])]
    rows = []
    for role in sets:
        rows += recall_contrasts(ctx, {state: by_role[role] for state, by_role in state_sets.items()}, pairs)
    return pd.DataFrame(rows)


def audit_rows(train, bank, start, spec, epsilons, m: int, seed: int) -> pd.DataFrame:
    """The one-run privacy audit of each run of the sweep (same start, settings and noise seed)."""
    from ...dp.audit import audit_run

    rows = []
    for eps in epsilons:
        run = spec.but(epsilon=eps, private=True) if eps is not None else spec.but(
            epsilon=None, delta=None, private=False, noise_multiplier=None)
        rec = audit_run(train, bank, start, run, m, seed=seed)
        rows.append({"setting": f"ε = {eps:g}" if eps is not None else "no DP", "target_epsilon": eps,
                     **{k: rec[k] for k in ("claimed_epsilon", "epsilon_lower_bound", "m", "n_guess", "n_correct",
                                            "tpr_at_fpr_0.01", "dp_limit_at_fpr_0.01", "tpr_at_fpr_0.1",
                                            "dp_limit_at_fpr_0.1", "bound_below_claim")}})
    return pd.DataFrame(rows)


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    from dataclasses import replace

    from ...api.mitigate import mitigate
    from ...dp.apply import apply_heads
    from ...dp.heads_data import make_dataset
    from ...dp.release import write
    from ...dp.start import starting_heads
    from ...models.heads import extract_heads

    p = ctx.profile
    rung, full, sets = headline_sets(ctx)
    loaded = load(rung)
    train, bank = full.split("train"), full.split("validate")
    spec = mitigation_spec(ctx, len(make_dataset(train, p.dp_privacy_unit)))
    frames = [recall_rows(ctx, rung, sets, "before", None)]
    state_sets = {"before": sets}
    rows, headline = [], None
    epsilons = sorted({e for e in p.epsilons if e is not None} | {p.epsilon}) + ([None] if None in p.epsilons else [])
    # the bank: the internal cohort's validate split (the external cohort is evaluated, so it cannot be the bank);
    # the sets re-projected: the whole internal set and the external cohort
    keep = [("internal", full)] + [(role, es) for role, es in sets.items() if role != "internal"]
    for eps in epsilons:
        private = eps is not None
        run = spec.but(epsilon=eps, private=True) if private else spec.but(
            epsilon=None, delta=None, private=False, noise_multiplier=None)
        result = mitigate(full, run, model=loaded, apply=[es for _, es in keep[1:]], names=[n for n, _ in keep],
                          bank_name="the validate split of the internal cohort", progress=ctx.progress)
        heads, report = result.heads, result.report
        after = {role: apply_heads(es, heads) for role, es in sets.items()}
        state_sets[eps if private else "no_dp"] = after
        frames.append(recall_rows(ctx, rung, after, "dp" if private else "non_private", eps))
        rows.append({"setting": f"ε = {eps:g}" if private else "no DP", **_public(report)})
        if private and eps == p.epsilon:
            headline = result
    report = headline.report
    public = _public(report)
    write(replace(headline, report={**report, "model": rung.name}), tmp / RELEASE, tmp / HEADLINE)
    start, _ = starting_heads(extract_heads(loaded.model), None, spec.init_seed)
    audits = audit_rows(train, bank, start, spec, epsilons, AUDIT_CANARIES, p.dp_seed)
    write_json(tmp / "privacy.json", {**public, **{k: report[k] for k in ("trained_on", "bank_note",
                                                                          "release_reason")}})
    finish(tmp, ctx, "dp", {"effects.parquet": pd.concat(frames, ignore_index=True), "sweep.parquet": pd.DataFrame(rows),
                            "contrasts.parquet": contrast_rows(ctx, sets, state_sets, epsilons),
                            "audit.parquet": audits},
           {"model": rung.name, "privacy": public})


RESULT = Result("dp", build, source=("dp", "retrieval", "models", "api/mitigate.py"),
                fields=("eval_split", "pools", "ks", "n_boot", "audit_seed", "epsilon", "delta", "accountant",
                        "epsilons", "dp_epochs", "dp_batch_size", "dp_lr", "dp_clip_norm", "dp_temperature",
                        "dp_privacy_unit", "dp_seed"))
