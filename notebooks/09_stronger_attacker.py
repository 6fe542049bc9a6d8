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
#     - attacker
# ---

# %% [markdown]
# # Beyond the study: a stronger attacker
#
# The study, and the chapters before this one, measure one attacker: the
# model's own cosine similarity, ranked, averaged over every released image
# (Recall@K over random pools). Membership-inference research judges an
# attack by how many records it exposes *with confidence*, its true-positive
# rate at a low false-positive rate {cite}`carlini2022lira`. This chapter
# measures that attacker for re-linkage. In a pool of N candidate reports the
# attacker links a released image to its top-scoring report only when that
# score clears a threshold t; over t this traces the attacker's
# precision-recall curve, computed exactly over random pools like Recall@K
# (the methods page gives the counts). The figure a custodian should fear is
# the share of images re-linked at a precision of at least 0.9 (or 0.99): for
# an attacker who knows the best threshold (the worst case), and for one who
# calibrates it on a small set of labelled pairs held apart from the audited
# ones. Random embeddings re-link no image at these precisions, so the
# chance level of both figures is zero. The study reported none of these
# numbers: the claims table lists them with "no study value".

# %% tags=["parameters", "remove-cell"]
profile = "synthetic"  # a profile name, or the record `relink paper` passes
artifacts = ""

# %% tags=["remove-cell"]
from IPython.display import display

from relink.paper import beyond, figures
from relink.paper.display import prose, show
from relink.paper.notebook import glue, open_results

res = open_results(profile, artifacts, chapter="09_stronger_attacker")
confident = res.table("attacker", "confident.parquet")
curves = res.table("attacker", "curves.parquet")
panel = res.json("attacker", "panel.json")
for key, value in beyond.glue_values(confident, res.profile.epsilon).items():
    glue(key, prose(value) if isinstance(value, str) else value)
glue("panel_sentence", prose(beyond.panel_sentence(panel)))

# %% [markdown]
# ## The attacker's precision-recall curve
#
# {numref}`fig-attacker-pr` shows, for every rung of the ladder in pools of
# N = {glue:text}`attacker_n:,d`, the precision of the attacker's links against
# the share of held-out images it re-links correctly, as its threshold moves
# from strict (left) to loose (right); the dashed line is the strongest rung
# after its heads were retrained with DP (chapter 4), the dash-dotted one the
# same trunk with heads an attacker re-trained without DP on public pairs.

# %% tags=["remove-input"] mystnb={"figure": {"name": "fig-attacker-pr", "caption": "The threshold attacker's precision (%) against the images it re-links correctly (% of the held-out internal images, image \u2192 report, study level) in random pools of the chapter's declared N, exact over pools; one line per model of the ladder, dashed: the strongest model's DP heads, dash-dotted: heads re-trained without DP on the external cohort's pairs; dotted: precision 90% and 99%."}}
fig = figures.attacker_curves(curves, beyond.ladder(confident))
glue("fig_attacker_pr", fig, display=False)
fig

# %% [markdown]
# ## Images re-linked with confidence
#
# {glue:md}`attacker_sentence`
# {numref}`fig-attacker-confident` and the table below give the same figures for
# every rung, with 95% patient-clustered intervals.

# %% tags=["remove-input"] mystnb={"figure": {"name": "fig-attacker-confident", "caption": "Images re-linked at precision \u2265 90% and \u2265 99% (% of the held-out internal images, attacker who knows the best threshold) per model of the ladder, for the strongest model's DP heads and for heads re-trained without DP on public pairs, in random pools of the chapter's declared N; error bars: 95% patient-clustered intervals."}}
fig = figures.confident_bars(confident)
glue("fig_attacker_confident", fig, display=False)
fig

# %% tags=["remove-input"]
display(show(beyond.table(confident), uid="confident",
             caption="Images re-linked at each precision target (% of the held-out images, 95% interval)"))

# %% [markdown]
# ## Heads re-trained on public pairs
#
# DP heads bound what the *released heads* reveal about the private rows.
# An attacker who holds the released trunk (or any model over the same trunk)
# and a public set of image-report pairs can train heads of their own, without
# DP, and re-link the released images with them. Here the public set is the
# external cohort (other patients, other hospital), and the heads start from a
# random start, as the chapter on mitigation describes.
#
# {glue:md}`retrained_sentence`

# %% [markdown]
# ## The attacker panel
#
# A custodian does not know which model an attacker will use. `relink report`
# takes several EmbeddingSets of the same rows, one per model (the custodian's
# and any public model an attacker could use), and its verdict is the worst
# over them. Here the ladder is that panel.
#
# {glue:md}`panel_sentence`

# %% tags=["remove-input"]
display(show(beyond.panel_table(panel), uid="panel",
             caption="The attacker panel: each model's own verdict in the custodian's report (the page's verdict is "
                     "the worst)"))
