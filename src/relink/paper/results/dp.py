"""Result ``dp``: the strongest model's heads retrained with DP at every epsilon of the profile.

Tables

* ``effects.parquet``: Recall@1 per state ``before`` | ``dp`` | ``non_private``,
  epsilon, cohort and pool;
* ``contrasts.parquet``: paired patient-bootstrap contrasts (relative change
  of Recall@1, :mod:`relink.retrieval.contrast`) on the same rows, columns
  ``contrast``, ``cohort``, ``epsilon``, ``direction``, ``N``, ``K``, ``a``,
  ``b``, ``value``, ``ci_low``, ``ci_high``, ``n_patients``: ``dp_vs_no_dp``
  (DP's own effect: the control is the same training without DP, same
  start, bank, epochs and temperature), ``dp_vs_before`` (against the model
  before mitigation), ``no_dp_vs_before`` (what retraining alone does) and
  ``dp_vs_next_epsilon`` (each epsilon against the next larger one: what a
  "monotone" claim rests on);
* ``sweep.parquet``: the privacy record of each run;
* ``audit.parquet``: the one-run empirical privacy audit of each run
  (:mod:`relink.dp.audit`): the 95% lower bound on epsilon beside the claim,
  and a membership attack's TPR at FPR 0.01 and 0.1 beside DP's limit.

``privacy.json`` (the headline run's release record), ``headline-release/``
(the headline run's release folder: heads and privacy record only) and
``headline-study/`` (its study folder, what ``relink report --mitigated``
reads: the re-projected sets and the full record, not for release).

Every run goes through the front door :func:`relink.api.mitigate.mitigate`,
one call per epsilon, from one seeded random start with the spec's fixed temperature and
reproducible noise (``dp_seed``): the paper is a study of many runs on the
same private split, and its heads are marked not for release (the ladder's
trunks were also trained on the private split, which the records say).
delta is the profile's, or derived from the run's n private units.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def _values(ctx: Context, sets: dict, state_sets: dict):
    """Per-query Recall@1 audits of each state's sets, at the headline pool each cohort fills."""
    from ...retrieval.audit import audit_queries
    from .common import audit_spec

    out = {}
    for role, es in sets.items():
        n = min(ctx.profile.n_target, len(es))
        spec = audit_spec(ctx, ks=(1,), directions=("image_to_report",), levels=("study",), negatives=("random",),
                          pools=(n,))
        out[role] = (n, {state: audit_queries(state_sets[state][role], spec) for state in state_sets})
    return out


def contrast_rows(ctx: Context, sets: dict, state_sets: dict, epsilons: list) -> pd.DataFrame:
    """The paired contrasts of :data:`CONTRASTS` (relative change of Recall@1, ``b`` against ``a``)."""
    from ...retrieval.contrast import contrast_of_audits

    dp_eps = sorted(e for e in epsilons if e is not None)
    pairs = [("dp_vs_no_dp", e, "no_dp", e) for e in dp_eps if None in epsilons]
    pairs += [("dp_vs_before", e, "before", e) for e in dp_eps]
    pairs += [("no_dp_vs_before", None, "before", "no_dp")] if None in epsilons else []
    pairs += [("dp_vs_next_epsilon", lo, hi, lo) for lo, hi in zip(dp_eps, dp_eps[1:])]
    rows = []
    for role, (n, qv) in _values(ctx, sets, state_sets).items():
        cohort = str(sets[role].rows["cohort"].iloc[0])  # named as the effects table names it
        for name, eps, a, b in pairs:
            c = contrast_of_audits(qv[a], qv[b], "relative", random_state=ctx.profile.audit_seed,
                                   direction="image_to_report", N=n, K=1)
            rows.append({"contrast": name, "cohort": cohort, "epsilon": np.nan if eps is None else float(eps),
                         "direction": "image_to_report", "N": n, "K": 1, "a": _label(a), "b": _label(b),
                         "value": c.value, "ci_low": c.ci_low, "ci_high": c.ci_high, "n_patients": c.n_patients})
    return pd.DataFrame(rows)


def _label(state) -> str:
    return state if isinstance(state, str) else f"ε = {state:g}"


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
