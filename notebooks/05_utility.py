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
#     - utility
# ---

# %% [markdown]
# # What the mitigated model keeps
#
# The study measures utility with a linear probe: one logistic regression per
# CheXpert label on the image embeddings (patient-disjoint split), summarised
# as the macro AUROC over the labels. As the methods page explains, a
# converged linear probe cannot see an invertible change of the image head, so
# this number barely moves almost by construction. It is reported as in the
# study, on the trunk features as a control, and beside two utilities that do
# depend on the image-text alignment the mitigation targets: zero-shot AUROC
# from label prompts, and the member gap (re-linkage of training members
# against held-out non-members).

# %% tags=["parameters", "remove-cell"]
profile = "synthetic"  # a profile name, or the record `relink paper` passes
artifacts = ""

# %% tags=["remove-cell"]
from IPython.display import display

from relink.paper import dp_effects, figures, summaries as S
from relink.paper.display import show
from relink.paper.notebook import glue, open_results

res = open_results(profile, artifacts, chapter="05_utility")
util = res.table("utility", "utility.parquet")

# %% tags=["remove-cell"]
for key, value in S.utility_glue_values(util).items():
    glue(key, value)

glue("gap_intervals", dp_effects.gap_intervals(util))
glue("gap_matched_on", dp_effects.gap_matched_on(util))

# %% [markdown]
# The linear-probe macro AUROC over {glue:text}`probe_n_labels:d` labels goes
# from {glue:text}`probe_before:.2f`% to {glue:text}`probe_after:.2f`%
# ({glue:text}`probe_change:+.2f` points; trunk features, which the mitigation
# cannot change: {glue:text}`probe_trunk:.2f`%). Zero-shot AUROC from label
# prompts, which needs the image and text heads to stay aligned, goes from
# {glue:text}`zeroshot_before:.2f`% to {glue:text}`zeroshot_after:.2f`%. The member
# gap in Recall@1 (training members minus held-out non-members, matched on size and on
# {glue:text}`gap_matched_on`) goes from {glue:text}`gap_before:.2f` to {glue:text}`gap_after:.2f`
# percentage points; its 95% patient-bootstrap intervals are {glue:text}`gap_intervals`. An interval
# that contains 0 shows no memorisation either way; a difference between the splits that the labels
# do not record would show as a gap too.

# %% tags=["remove-input"] mystnb={"figure": {"name": "fig-utility", "caption": "Utility of the strongest model before DP, with the DP heads and with heads trained the same way without DP: macro AUROC of the linear probe and of zero-shot label prompts (%), Recall@1 (%), and the member gap (percentage points), each in its own panel."}}
fig = figures.utility(util)
glue("fig_utility", fig, display=False)
fig

# %% tags=["remove-input"]
display(show(S.utility_table(util), uid="utility", formats={"before": ".2f", "dp": ".2f", "non_private": ".2f"},
             caption="Utility of the strongest model before and after DP"))
