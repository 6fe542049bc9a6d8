"""The paper: profiles, the cached stages and results it stands on, its chapters and the book.

:mod:`.profiles` (what a run is), :mod:`.stages` (cohorts, the model
ladder, embeddings), :mod:`.results` (one module per result table),
:mod:`.chapters` and :mod:`.runner` (papermill, then Jupyter Book),
:mod:`.notebook` (what a chapter calls), :mod:`.summaries`,
:mod:`.figures` and :mod:`.claims` (numbers, figures and verdicts for the
prose), :mod:`.leakscan` (what a credentialed run scans before publishing).
"""
