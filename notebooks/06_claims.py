# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
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
profile = "synthetic"
overrides = "{}"
artifacts = ""

# %% tags=["remove-cell"]
from IPython.display import display

from relink.paper import claims
from relink.paper.notebook import glue, open_results

res = open_results(profile, overrides, artifacts, needed=("cohorts", "audit", "hard_negatives", "dp", "utility"))
table = claims.reproduce(res)

# %% tags=["remove-input"]
display(claims.styled(table))

# %% tags=["remove-cell"]
for key, value in claims.glue_values(table).items():
    glue(key, value)

# %% [markdown]
# Of {glue:text}`claims_total:d` claims, {glue:text}`claims_magnitude:d` are
# reproduced in magnitude, {glue:text}`claims_direction:d` in direction only and
# {glue:text}`claims_not:d` not reproduced on the {glue:text}`claims_profile`
# profile.
