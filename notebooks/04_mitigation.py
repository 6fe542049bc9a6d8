# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: relink,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   relink:
#     results:
#     - dp
#     - retrained
# ---

# %% [markdown]
# # Differentially private mitigation
#
# Both encoders of the strongest model are frozen; only its two projection
# heads are retrained on cached trunk features of the internal training split,
# with DP-SGD against a fixed negative bank (the validation split), so that the
# accountant's guarantee holds for every training pair (see the methods page).
# The new heads re-project the held-out internal split and the external cohort
# without re-encoding an image and without retraining.

# %% tags=["parameters", "remove-cell"]
profile = "synthetic"  # a profile name, or the record `relink paper` passes
artifacts = ""

# %% tags=["remove-cell"]
from IPython.display import display

from relink.paper import dp_effects, figures, sentences, summaries as S
from relink.paper.display import prose, show
from relink.paper.notebook import glue, open_results

res = open_results(profile, artifacts, chapter="04_mitigation")
effects = res.table("dp", "effects.parquet")
privacy = res.json("dp", "privacy.json")
sweep = res.table("dp", "sweep.parquet")
contrasts = res.table("dp", "contrasts.parquet")
audits = res.table("dp", "audit.parquet")
internal, external = S.cohort_names(effects)
n_target = S.largest_finite_pool(effects, cohort=internal)

# %% tags=["remove-cell"]
before = S.one(effects, state="before", cohort=internal, N=n_target, K=1)
after = S.one(effects, state="dp", epsilon=res.profile.epsilon, cohort=internal, N=n_target, K=1)
glue("dp_epsilon", privacy["target_epsilon"])
glue("dp_epsilon_spent", privacy["epsilon"])
glue("dp_delta", privacy["delta"])
glue("dp_accountant", privacy["accountant"].upper())
glue("dp_rdp_epsilon", privacy["rdp_epsilon"])
glue("dp_sigma", privacy["noise_multiplier"])
glue("dp_clip", privacy["clip_norm"])
glue("dp_steps", int(privacy["steps"]))
glue("dp_unit", privacy["privacy_unit"])
glue("dp_ntarget", int(n_target))
glue("dp_r1_before", 100 * before["value"])
glue("dp_r1_after", 100 * after["value"])
eps = res.profile.epsilon
vs_before = dp_effects.contrast(contrasts, "dp_vs_before", internal, eps)
glue("dp_change_internal", 100 * vs_before["value"])
glue("dp_after_significant", "below" if vs_before["ci_high"] < 0 else "not below")
glue("dp_effect_internal", prose(dp_effects.effect_sentence(contrasts, eps, internal)))
own = dp_effects.contrast(contrasts, "dp_vs_no_dp", internal, eps)
glue("dp_own_internal", dp_effects.pct(own))
glue("dp_effect_external", prose(dp_effects.effect_sentence(contrasts, eps, external, "the external cohort")
                                 if external is not None else "This profile has no external cohort."))
# the abstract's external sentence: the same paired contrasts, with retraining's share named
glue("dp_external_sentence", prose(dp_effects.effect_sentence(contrasts, eps, external, "the external cohort")
                                   if external is not None else "This profile has no external cohort."))
glue("dp_monotone", prose(dp_effects.monotone_sentence(contrasts, internal)))
glue("dp_trained_on", prose(f"The heads start from {privacy['trained_on']['start']}; the trunk is "
                            f"{privacy['trained_on']['trunk']}. {privacy['release_reason']}"))
glue("dp_caveats", prose(sentences.dp_caveats(privacy, sweep)))

# %% [markdown]
# ## Before and after
#
# At a target of ε = {glue:text}`dp_epsilon:.2f` (δ = {glue:text}`dp_delta:.1e`;
# the {glue:text}`dp_accountant` accountant reports ε = {glue:text}`dp_epsilon_spent:.3f` spent,
# RDP gives ε = {glue:text}`dp_rdp_epsilon:.3f`
# for the same noise multiplier {glue:text}`dp_sigma:.2f`, clip norm
# {glue:text}`dp_clip:.1f`, {glue:text}`dp_steps:d` steps; privacy unit: one
# {glue:text}`dp_unit`), Recall@1 at N = {glue:text}`dp_ntarget:,d` on the held-out
# internal split goes from {glue:text}`dp_r1_before:.2f`% to
# {glue:text}`dp_r1_after:.2f`% (a relative change of {glue:text}`dp_change_internal:+.1f`%;
# the upper end of its paired interval is {glue:text}`dp_after_significant` 0).
# That change mixes two things: retraining the heads, and DP. The control that isolates DP is the same
# training without DP (same start, bank, epochs, temperature), paired on the same queries:
# {glue:md}`dp_effect_internal`
# {glue:md}`dp_effect_external`
#
# What ε covers: the training of the heads, given their start and the trunk.
# {glue:md}`dp_trained_on`

# %% tags=["remove-input"]
display(show(S.before_after_table(effects, epsilon=res.profile.epsilon, K=1), uid="before-after",
             formats={"recall_before_%": ".2f", "recall_after_%": ".2f", "relative_change_%": "+.1f"},
             caption=f"Recall@1 before and after DP at ε = {res.profile.epsilon:g}, by cohort and pool size"))

# %% [markdown]
# ## The privacy-utility frontier
#
# The same training at several privacy budgets, and without DP (no clipping, no
# noise): Recall@1 at the largest pool each cohort fills, with 95%
# patient-clustered intervals.
# Lower is better for privacy here.

# %% tags=["remove-input"] mystnb={"figure": {"name": "fig-frontier", "caption": "Recall@1 (%) of the DP heads against the privacy budget \u03b5 (per run), one line per cohort at the largest pool N it fills; bars: 95% patient-clustered intervals; dotted: the model before mitigation; dashed: heads trained the same way without DP."}}
fig = figures.frontier(effects, K=1)
glue("fig_frontier", fig, display=False)
fig

# %% tags=["remove-cell"]
# the order of the budgets rests on paired intervals (each epsilon against the next), not on overlapping ones
glue("frontier_verdict", dp_effects.monotone_sentence(contrasts, internal))

# %% [markdown]
# Across the budgets on the internal cohort, paired step by step: {glue:text}`frontier_verdict`
# {glue:md}`dp_caveats`

# %% tags=["remove-input"]
first = sweep.iloc[0]
display(show(S.sweep_table(sweep), uid="sweep", formats={"epsilon": ".3f", "rdp_epsilon": ".3f", "noise_multiplier": ".3f"},
             caption=f"The privacy record of each run of the sweep: {int(first['epochs'])} epochs at sample rate "
                     f"{first['sample_rate']:.4f}, a bank of {int(first['n_bank']):,} pairs"))

# %% [markdown]
# ## An empirical privacy audit
#
# Each run of the sweep is repeated once with canaries (Steinke, Nasr and Jagielski 2023): random pairs, each
# added to the private rows with probability 1/2, scored after training by their own image-report cosine. The
# guesses give a 95%-confidence lower bound on the run's ε: it must lie below the claimed ε for every DP run
# (above it would mean a bug), while the run without DP shows what the audit can detect.
# {glue:md}`dp_audit_sentence`

# %% tags=["remove-cell"]
dp_runs = audits[audits["claimed_epsilon"].notna()]
worst = (dp_runs["epsilon_lower_bound"] - dp_runs["claimed_epsilon"]).max() if len(dp_runs) else float("nan")
plain = audits[audits["claimed_epsilon"].isna()]
glue("dp_audit_sentence", prose(
    ("Every DP run's lower bound lies below its claimed ε" if worst <= 0 else "A DP run's lower bound exceeds its claim")
    + (f"; the run without DP gives a lower bound of {float(plain['epsilon_lower_bound'].iloc[0]):.2f}."
       if len(plain) else ".")))

# %% tags=["remove-input"] mystnb={"figure": {"name": "fig-dp-audit", "caption": "The one-run privacy audit: the empirical 95% lower bound on \u03b5 from canary guesses against the \u03b5 the accountant claims, per DP run of the sweep (points; dotted: bound = claim, which a correct implementation never exceeds beyond chance); dashed: the bound for the same training without DP, which claims nothing."}}
fig = dp_effects.audit_figure(audits)
glue("fig_dp_audit", fig, display=False)
fig

# %% [markdown]
# ## An attacker who re-trains the heads
#
# The DP heads protect the released images only against an attacker who uses them. An attacker who holds the
# trunks (released with the heads, or a public model) can train heads of their own, without DP, on any public
# set of image-report pairs. Here that attacker trains on the external cohort's pairs from a random start and
# re-links the same held-out internal rows; each state is compared with the others on the same queries
# (Recall@1 at the headline pool, relative change with a 95% paired patient-clustered interval).
# {glue:md}`retrained_sentence`

# %% tags=["remove-cell"]
retrained = res.table("retrained", "contrasts.parquet")
glue("retrained_sentence", prose(dp_effects.retrained_sentence(retrained)))

# %% tags=["remove-input"]
if len(retrained):
    display(show(S.retrained_table(retrained), uid="retrained",
                 formats={"relative_change_%": "+.1f"},
                 caption=f"Recall@1 of three heads over the same trunk on the held-out internal rows, paired: "
                         f"the original heads, the DP heads (\u03b5 = {res.profile.epsilon:g}) and heads re-trained "
                         f"without DP on the external cohort's pairs"))
