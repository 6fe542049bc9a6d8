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
#     - attacker
# ---

# %% [markdown]
# # The study's claims, reproduced
#
# Every quantitative claim of the study, the number reproduced here, the
# profile it came from, the interval its test read, and a verdict computed
# from them by the one rule stated below the table. Where a claim compares
# two measurements (a later model against the first, pathology-matched
# against random pools), both are measured on the same queries and the
# interval is a paired one. On the synthetic profile the cohort sizes are
# not meant to match, and absolute recall depends on a small model trained
# for minutes, so "direction" is the expected verdict for most rows there; on
# the `mimic` profile the same table checks the study itself. The last rows go
# beyond the study: what the stronger attacker of the chapter
# [Beyond the study](09_stronger_attacker.ipynb) re-links with confidence. The
# study reported no such number, so they carry "no study value" and are not rated.

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
for key, value in claims.glue_values(table, res.profile.credentialed).items():
    glue(key, prose(value) if key.endswith(("_sentence", "_rule", "_abstract")) else value)

# %% [markdown]
# ## The rating rule
#
# {glue:md}`claims_rule`
#
# ## What the table says
#
# {glue:md}`claims_sentence`
# {glue:md}`claims_sizes_sentence`
# {glue:md}`split_sentence`
# {glue:md}`claims_abstract`
