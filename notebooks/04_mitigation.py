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

from relink.paper import figures, sentences, summaries as S
from relink.paper.display import prose, show
from relink.paper.notebook import glue, open_results

res = open_results(profile, artifacts, chapter="04_mitigation")
effects = res.table("dp", "effects.parquet")
privacy = res.json("dp", "privacy.json")
sweep = res.table("dp", "sweep.parquet")
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
glue("dp_change_internal", 100 * S.relative_change(before["value"], after["value"]))
glue("dp_after_significant", "below" if after["ci_high"] < before["value"] else "not below")
glue("dp_external_sentence", prose(sentences.dp_external(effects, res.profile.epsilon, external)))
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
# the upper end of its interval is {glue:text}`dp_after_significant` the value before).
# {glue:md}`dp_external_sentence`

# %% tags=["remove-input"]
display(show(S.before_after_table(effects, epsilon=res.profile.epsilon, K=1), uid="before-after",
             formats={"recall_before_%": ".2f", "recall_after_%": ".2f", "relative_change_%": "+.1f"},
             caption=f"Recall@1 before and after DP at ε = {res.profile.epsilon:g}, by cohort and pool size"))

# %% [markdown]
# ## The privacy-utility frontier
#
# The same training at several privacy budgets, and without DP (no clipping, no
# noise): Recall@1 at the largest pool each cohort fills, with patient-bootstrap
# intervals.
# Lower is better for privacy here.

# %% tags=["remove-input"]
fig = figures.frontier(effects, K=1)
glue("fig_frontier", fig, display=False)
fig

# %% tags=["remove-cell"]
glue("frontier_verdict", S.frontier_verdict(effects, cohort=internal, N=n_target, K=1))

# %% [markdown]
# Across the budgets on the internal cohort: {glue:text}`frontier_verdict`
# {glue:md}`dp_caveats`

# %% tags=["remove-input"]
first = sweep.iloc[0]
display(show(S.sweep_table(sweep), uid="sweep", formats={"epsilon": ".3f", "rdp_epsilon": ".3f", "noise_multiplier": ".3f"},
             caption=f"The privacy record of each run of the sweep: {int(first['epochs'])} epochs at sample rate "
                     f"{first['sample_rate']:.4f}, a bank of {int(first['n_bank']):,} pairs"))
