"""Sphinx extension: refuse to build the book from missing or stale chapters.

Every number in the prose is glued from an executed chapter; a chapter that
was never executed, or whose notebook or relink source changed since, would
publish an empty or outdated number. The build stops with one message naming
the chapters and the command that regenerates them. Set RELINK_ALLOW_STALE=1
to preview prose against whatever chapters exist.
"""

import os

from sphinx.errors import ExtensionError


def _check(app):
    if os.environ.get("RELINK_ALLOW_STALE") == "1":
        return
    # Check the chapters of the book being built, wherever it is.
    os.environ.setdefault("RELINK_BOOK_DIR", str(app.srcdir))
    from relink.paper.chapters import chapters
    from relink.paper.runner import book_problems

    problems = book_problems(list(chapters()))
    if problems:
        raise ExtensionError(
            "missing, stale or inconsistent chapters: " + "; ".join(problems)
            + ". Run `make paper` (or `relink paper`) to execute them before building the book."
        )


def setup(app):
    app.connect("builder-inited", _check)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
