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
#     - hard_negatives
# ---

# %% [markdown]
# # Pathology-matched hard negatives
#
# A model could link images to reports only through the findings they share:
# an image with a left effusion and a pacemaker matches reports that mention
# both. If that were all, the risk would be a risk to groups of patients, not
# to individuals. To test it, the distractors of each pool are drawn only from
# reports with **the same 14-label vector** as the query's own report
# (pathology-matched), or, more loosely, with the same set of positive
# findings. Queries whose group cannot fill a pool of N are excluded from that
# N, and the share of queries that could be evaluated is reported as
# *coverage*: a pool is never shrunk silently. Pairs whose report mentions none
# of the 14 observations belong to no pathology group; they are left out of
# this chapter for every kind of pool alike. Random pools are evaluated on every
# remaining query, matched pools on the queries their group can fill (the
# coverage); the comparison below sets matched pools beside random pools of
# the same covered queries, so that it compares like with like.

# %% tags=["parameters", "remove-cell"]
profile = "synthetic"  # a profile name, or the record `relink paper` passes
artifacts = ""

# %% tags=["remove-cell"]
from IPython.display import display

from relink.paper import figures, summaries as S
from relink.paper.display import prose, show
from relink.paper.notebook import glue, open_results

res = open_results(profile, artifacts, chapter="03_hard_negatives")
hn = res.table("hard_negatives", "hard_negatives.parquet")
internal, external = S.cohort_names(hn)
strongest = S.strongest_model(hn)

# %% tags=["remove-input"] mystnb={"figure": {"name": "fig-hard-negatives", "caption": "Lift of the strongest model's Recall@1 over chance (\u00d7) against the pool size N, internal held-out split, for random and label-matched distractors; marker area: coverage (the share of queries whose label group fills a pool of N); bands: 95% patient-clustered intervals; dashed: chance."}}
fig = figures.hard_negatives(hn, model=strongest, cohort=internal, K=1)
glue("fig_hard_negatives", fig, display=False)
fig

# %% tags=["remove-cell"]
n_hn = S.largest_covered_pool(hn, model=strongest, cohort=internal, negatives="pathology_matched", min_coverage=0.5)
rand = S.one(hn, model=strongest, cohort=internal, negatives="random", N=n_hn, K=1)
hard = S.one(hn, model=strongest, cohort=internal, negatives="pathology_matched", N=n_hn, K=1)
loose = S.one(hn, model=strongest, cohort=internal, negatives="positive_set_matched", N=n_hn, K=1)
glue("hn_pool", int(n_hn))
glue("hn_unlabelled", int(hard["unlabelled_excluded"]))
glue("hn_random_lift", rand["lift"])
glue("hn_matched_lift", hard["lift"])
glue("hn_matched_lift_lo", hard["ci_low"] / hard["chance"])
glue("hn_matched_coverage", 100 * hard["coverage"])
glue("hn_loose_lift", loose["lift"])
glue("hn_paired_lift", hard["paired_random_lift"])
glue("hn_retained", 100 * hard["value"] / hard["paired_random_value"])
glue("hn_verdict", prose(S.hard_negative_verdict(hard)))

# %% [markdown]
# {numref}`fig-hard-negatives` sets the kinds of distractors side by side.
# In pools of {glue:text}`hn_pool:,d` drawn within the query's label group
# (coverage {glue:text}`hn_matched_coverage:.0f`% of queries), the strongest
# model's Recall@1 is {glue:text}`hn_matched_lift:.1f` times chance (lower
# bound {glue:text}`hn_matched_lift_lo:.1f`), against
# {glue:text}`hn_paired_lift:.1f` times chance with random distractors for the
# same queries ({glue:text}`hn_random_lift:.1f` over all queries): the
# pathology-matched pools keep {glue:text}`hn_retained:.0f`% of the random-pool
# recall of those queries ({glue:text}`hn_unlabelled:,d` held-out pairs without
# any label were left out). With the looser matching (same positive findings) the lift is
# {glue:text}`hn_loose_lift:.1f`. {glue:md}`hn_verdict`
#
# ## Coverage
#
# How many queries have enough matched distractors for each pool size.

# %% tags=["remove-input"]
coverage = S.coverage_table(hn, model=strongest, cohort=internal)
display(show(coverage, uid="coverage", formats={c: ".1f" for c in coverage.columns if c != "negatives"},
             caption=f"Coverage (% of held-out queries) by pool size, {strongest}"))

# %% [markdown]
# ## All models

# %% tags=["remove-input"]
lifts = S.hard_negative_table(hn, cohort=internal, N=n_hn, K=1)
display(show(lifts, uid="hard-negatives", formats={c: ".2f" for c in lifts.columns if c not in ("rung", "model")},
             caption=f"Lift of Recall@1 over chance in pools of {n_hn:,}, by kind of distractors; "
                     "coverage of the pathology-matched pools"))
