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
#     - cohorts
# ---

# %% [markdown]
# # Cohorts
#
# Every chapter reads the same cohorts: an **internal** cohort with
# patient-disjoint train / validate / test splits (MIMIC-CXR in the study, the
# synthetic internal site in the default profile) and an **external** cohort
# used only for evaluation (CheXpert Plus in the study, the synthetic external
# site with its shifted image appearance and report style here). One row is
# one image-report pair: one frontal image of a study and the findings and
# impression of its report.

# %% tags=["parameters", "remove-cell"]
profile = "synthetic"  # a profile name, or the record `relink paper` passes
artifacts = ""

# %% tags=["remove-cell"]
from IPython.display import display

from relink.paper import figures, sentences
from relink.paper.display import prose, show
from relink.paper.notebook import glue, open_results

res = open_results(profile, artifacts, chapter="01_cohorts")
summary = res.table("cohorts", "summary.parquet")
prevalence = res.table("cohorts", "prevalence.parquet")

# %% [markdown]
# ## Pairs, studies and patients per cohort and split

# %% tags=["remove-input"]
SPLITS = {"train": 0, "validate": 1, "test": 2}
ordered = summary.sort_values(["role", "split"], key=lambda c: c.map(SPLITS) if c.name == "split" else c)
display(show(ordered[["cohort", "role", "split", "pairs", "studies", "patients"]], uid="cohorts"))

# %% tags=["remove-cell"]
internal = summary[summary["role"] == "internal"]
glue("n_pairs_total", int(summary["pairs"].sum()))
glue("n_patients_total", int(summary["patients"].sum()))
glue("n_internal_eval", int(internal.loc[internal["split"] == res.profile.eval_split, "pairs"].sum()))
glue("n_internal_train", int(internal.loc[internal["split"] == "train", "pairs"].sum()))
glue("external_cohort_sentence", prose(sentences.external_cohort(summary)))
glue("profile_name", res.profile.name)

# %% [markdown]
# The held-out internal split holds {glue:text}`n_internal_eval:,d` pairs; in
# all {glue:text}`n_pairs_total:,d` pairs from {glue:text}`n_patients_total:,d`
# patients (profile: {glue:text}`profile_name`).
# {glue:md}`external_cohort_sentence`
#
# ## Label prevalence
#
# The 14 CheXpert observations as a report labeler gives them: positive,
# uncertain (hedged mention), negative (explicit negation) or missing (not
# mentioned). Pathology-matched hard negatives (chapter 3) are drawn within
# groups of identical label vectors, so the prevalence decides how large those
# groups are ({numref}`fig-prevalence`).

# %% tags=["remove-input"] mystnb={"figure": {"name": "fig-prevalence", "caption": "Label states of the 14 CheXpert observations in each cohort, as a share of its image-report pairs: positive, uncertain (hedged), negative (explicitly negated) or missing (not mentioned)."}}
fig = figures.prevalence(prevalence)
glue("fig_prevalence", fig, display=False)
fig

# %% [markdown]
# ## Examples
#
# For the synthetic profile only, a few images beside their reports. The
# credentialed profiles never show an image, a report or an identifier: their
# chapters print aggregates only, and a scan of every executed chapter checks it.

# %% tags=["remove-input"] mystnb={"figure": {"name": "fig-examples", "caption": "Synthetic examples: each image (left, with its cohort) beside the findings and impression of its own report (right), as the generator wrote them. Credentialed profiles never show this figure."}}
if not res.profile.credentialed:  # shown, not only drawn: the figure is the cell's displayed output
    examples = res.json("cohorts", "examples.json")
    display(figures.example_pairs(examples, res.file("cohorts", ".")))
