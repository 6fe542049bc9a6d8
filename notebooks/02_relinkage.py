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
#     - audit
# ---

# %% [markdown]
# # Re-linkage across the specialization ladder
#
# Each image of the held-out split is a query; the candidates are the
# held-out reports. For pools of N candidates that contain the true report,
# Recall@K is computed exactly over all random pools (the hypergeometric
# estimator of the methods page), with 95% patient-clustered intervals (the
# methods page says which, and the null simulation that chose them). The ladder goes from weakly to strongly specialised models: in the
# default profile, checkpoints of one contrastive training run on the
# synthetic internal training split at increasing steps, standing in for the
# study's ladder of public VLMs.

# %% tags=["parameters", "remove-cell"]
profile = "synthetic"  # a profile name, or the record `relink paper` passes
artifacts = ""

# %% tags=["remove-cell"]
from IPython.display import display

from relink.paper import figures, sentences, summaries as S
from relink.paper.display import prose, show
from relink.paper.notebook import glue, open_results

res = open_results(profile, artifacts, chapter="02_relinkage")
audit = res.table("audit", "audit.parquet")
internal, external = S.cohort_names(audit)
strongest = S.strongest_model(audit)
n_target = S.largest_finite_pool(audit, cohort=internal)

# %% [markdown]
# ## Recall@1 against the pool size
#
# {numref}`fig-recall-vs-pool` shows Recall@1 for every rung of the ladder as the
# pool grows, beside the chance level $1/N$.

# %% tags=["remove-input"] mystnb={"figure": {"name": "fig-recall-vs-pool", "caption": "Recall@1 (image \u2192 report, %) against the candidate pool size N on the held-out internal split, one line per model of the ladder; bands: 95% patient-clustered intervals; dashed: chance, 1/N."}}
fig = figures.recall_vs_pool(audit, cohort=internal, K=1)
glue("fig_recall_vs_pool", fig, display=False)
fig

# %% tags=["remove-cell"]
row100 = S.one(audit, model=strongest, cohort=internal, N=100, K=1)
row_t = S.one(audit, model=strongest, cohort=internal, N=n_target, K=1)
row_full = S.one(audit, model=strongest, cohort=internal, pool="full", K=1)
glue("strongest_model", strongest)
glue("ntarget", int(n_target))
glue("r1_n100", 100 * row100["value"])
glue("r1_n100_lo", 100 * row100["ci_low"])
glue("r1_n100_hi", 100 * row100["ci_high"])
glue("lift_n100", row100["lift"])
glue("r1_ntarget", 100 * row_t["value"])
glue("lift_ntarget", row_t["lift"])
glue("lift_ntarget_lo", row_t["ci_low"] / row_t["chance"])
glue("lift_ntarget_hi", row_t["ci_high"] / row_t["chance"])
glue("ntarget_sentence", prose(sentences.target_pool(row_t)))
glue("ntarget_clause", prose(sentences.target_pool_clause(row_t)))
glue("n_full", int(row_full["N"]))
glue("r1_full", 100 * row_full["value"])
glue("lift_full", row_full["lift"])
glue("lift_full_lo", row_full["ci_low"] / row_full["chance"])
glue("full_verdict", S.chance_verdict(row_full))
r100 = [S.one(audit, model=m, cohort=internal, N=100, K=1)["value"] for m in S.ladder_order(audit)]
glue("ladder_monotone", "rises" if S.is_monotone(r100) else "does not rise monotonically")
glue("n_rungs", len(r100))

# %% [markdown]
# For the strongest model ({glue:text}`strongest_model`), Recall@1 in pools of
# 100 is {glue:text}`r1_n100:.1f`% (95% CI {glue:text}`r1_n100_lo:.1f`–{glue:text}`r1_n100_hi:.1f`%),
# {glue:text}`lift_n100:.1f` times chance. {glue:md}`ntarget_sentence` Against
# the whole held-out split ({glue:text}`n_full:,d` candidates) it is
# {glue:text}`lift_full:.1f` times chance (lower bound {glue:text}`lift_full_lo:.1f`):
# {glue:text}`full_verdict`.
# Across the {glue:text}`n_rungs:d` rungs of the ladder, Recall@1 at N = 100
# {glue:text}`ladder_monotone` with specialization.
#
# ## Lift over chance
#
# The same recall divided by chance ({numref}`fig-lift`): how many times more
# often than a blind guess the true report wins.

# %% tags=["remove-input"] mystnb={"figure": {"name": "fig-lift", "caption": "Lift of Recall@1 over chance (\u00d7) against the pool size N, internal held-out split, one line per model; bands: 95% patient-clustered intervals; dashed: chance (lift 1)."}}
fig = figures.lift_vs_pool(audit, cohort=internal, K=1)
glue("fig_lift", fig, display=False)
fig

# %% [markdown]
# ## Both directions, both levels, K = 1, 5, 10
#
# Report-to-image re-linkage (a leaked report finds its image) and the
# patient-level variant (a hit is any report of the same patient) for the
# strongest model.

# %% tags=["remove-input"]
recall = S.wide_table(audit, model=strongest, cohort=internal)
display(show(recall, uid="recall", formats={c: ".2f" for c in recall.columns if c.startswith("Recall")},
             caption=f"Recall@K (%) of {strongest} on the held-out split of {internal}"))

# %% [markdown]
# ## The external cohort, without retraining

# %% tags=["remove-cell"]
glue("external_sentence", prose(sentences.external_relinkage(audit, strongest, external)))

# %% tags=["remove-input"] mystnb={"figure": {"name": "fig-recall-external", "caption": "Recall@1 (image \u2192 report, %) against the pool size N on the external cohort, with the models trained on the internal cohort and no retraining; bands: 95% patient-clustered intervals; dashed: chance, 1/N."}}
if external is not None:
    fig = figures.recall_vs_pool(audit, cohort=external, K=1)
    display(fig)

# %% [markdown]
# {glue:md}`external_sentence`
# The full table of every model, cohort, direction, level, pool and K is the
# result file `audit.parquet` of this profile.
