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
#     - custodian
# ---

# %% [markdown]
# # The custodian's report
#
# A data custodian who considers releasing chest radiographs without their
# reports needs a decision, not a table. `relink report` turns the audit into
# one page a data-protection officer can act on: the threat model as the
# custodian declares it, the expected number of released images an attacker
# would re-link to their own report (with its interval), a verdict from a rule
# printed with its thresholds, whether the risk survives pathology-matched
# distractors, where it concentrates (aggregates only, small cells
# suppressed), and what the DP heads of chapter 4 change. This chapter runs it
# on the strongest model of this profile's ladder for the held-out split.

# %% tags=["parameters", "remove-cell"]
profile = "synthetic"  # a profile name, or the record `relink paper` passes
artifacts = ""

# %% tags=["remove-cell"]
import shutil

from IPython.display import HTML, display

from relink.paper import sentences
from relink.paper.chapters import CHAPTER_DIR
from relink.paper.display import framed, prose
from relink.paper.notebook import glue, open_results

res = open_results(profile, artifacts, chapter="07_custodian_report")
report = res.json("custodian", "report.json")
# The standalone page and its JSON travel with the chapter, so the book links to both (a reader downloads them).
shutil.copyfile(res.file("custodian", "report.html"), CHAPTER_DIR / "custodian_report.html")
shutil.copyfile(res.file("custodian", "report.json"), CHAPTER_DIR / "custodian_report.json")
threat, verdict, head = report["threat_model"], report["verdict"], report["headline"]
glue("report_verdict", verdict["level"].upper())
glue("report_decision", prose(verdict["decision"]))
glue("report_statement", prose(threat["statement"]))
glue("report_headline", prose(head["sentence"]))
glue("report_rule", prose(sentences.report_rule(verdict)))
glue("report_recommendation", prose(" ".join(report["recommendation"])))

# %% [markdown]
# ## The threat model, as declared
#
# {glue:md}`report_statement`
#
# ## The verdict
#
# The verdict is **{glue:text}`report_verdict`**. Decision: {glue:md}`report_decision`.
# {glue:md}`report_headline`
#
# {glue:md}`report_rule`
#
# {glue:md}`report_recommendation`
#
# The whole page is below at its full height, as the custodian receives it; it is also a
# standalone file ({download}`custodian_report.html`) that opens in any browser
# with no network access, beside a JSON file with the same numbers
# ({download}`custodian_report.json`, schema `relink-report/2`) for a release pipeline
# (`relink report --fail-on high` exits with status 3 when the verdict is high; `--fail-on elevated` also
# when it is inconclusive). The page below plots the expected re-linked images against the attacker's pool N,
# with the declared pools marked, and ends with the decision record.

# %% tags=["remove-input"]
display(HTML(framed(res.file("custodian", "report.html").read_text(encoding="utf-8"))))
