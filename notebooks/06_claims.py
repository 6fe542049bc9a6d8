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
#     - audit
#     - hard_negatives
#     - dp
#     - utility
# ---

# %% [markdown]
# # The study's claims, reproduced
#
# Every quantitative claim of the study, the number reproduced here, the
# profile it came from, and a verdict computed from the two: **magnitude**
# (the reproduced number is within a factor of two of the study's, or within
# the stated tolerance for changes measured in points), **direction** (same
# sign or side of chance, different size), or **not**. On the synthetic
# profile the cohort sizes are not meant to match, and absolute recall depends
# on a small model trained for minutes, so "direction" is the expected verdict
# for most rows there; on the `mimic` profile the same table checks the study
# itself.

# %% tags=["parameters", "remove-cell"]
profile = "synthetic"  # a profile name, or the record `relink paper` passes
artifacts = ""

# %% tags=["remove-cell"]
from IPython.display import display

from relink.paper import claims, sentences
from relink.paper.display import prose
from relink.paper.notebook import glue, open_results

res = open_results(profile, artifacts, chapter="06_claims")
table = claims.reproduce(res)
glue("split_sentence", prose(sentences.split_sentence(res.profile, res.table("cohorts", "summary.parquet"))))

# %% tags=["remove-input"]
display(claims.styled(table))

# %% tags=["remove-cell"]
for key, value in claims.glue_values(table).items():
    glue(key, prose(value) if key.endswith("_sentence") else value)

# %% [markdown]
# {glue:md}`claims_sentence`
# {glue:md}`split_sentence`
