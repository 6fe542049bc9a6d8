"""The paper: profiles, the cached stages and results it stands on, its chapters and the book.

:mod:`.profiles` (what a run is), :mod:`.stages` and :mod:`.results` (cached, one module per result),
:mod:`.runner` (papermill, then Jupyter Book), :mod:`.notebook` and the modules a chapter calls for
numbers, sentences, tables and figures.
"""
