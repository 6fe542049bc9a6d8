"""What a chapter notebook calls: open the (cached) results of a profile, glue numbers.

A reader who opens a chapter on its own (Binder, Jupyter) gets its results built on first use, from the
same cache ``relink paper`` fills.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..tables import read_table
from .profiles import Profile, get_profile


@dataclass
class Results:
    profile: Profile
    paths: dict[str, Path]

    def table(self, result: str, name: str) -> pd.DataFrame:
        return read_table(self.paths[result] / name)[0]

    def json(self, result: str, name: str) -> Any:
        return json.loads((self.paths[result] / name).read_text())

    def file(self, result: str, name: str) -> Path:
        return self.paths[result] / name


def _register_figure_display() -> None:
    """Let IPython render bare matplotlib ``Figure`` objects (and glued ones) as PNG: built without pyplot,
    they would otherwise print as ``<Figure size ...>`` text."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:  # not in IPython: nothing to display
        return
    shell = get_ipython()
    if shell is not None:
        select_figure_formats(shell, {"png"}, dpi=110)


def open_results(profile: str = "synthetic", artifacts: str = "", chapter: str | None = None) -> Results:
    """The results a chapter reads, built if missing. ``profile``: a profile name, or the JSON record
    ``relink paper`` passes."""
    from .chapters import chapter as find_chapter
    from .results import build_results

    _register_figure_display()
    prof = Profile.from_record(profile) if profile.lstrip().startswith("{") else get_profile(profile)
    names = find_chapter(chapter).results if chapter else ()
    paths = build_results(prof, list(names), artifacts or None, quiet=True)
    return Results(prof, paths)


def glue(key: str, value: Any, display: bool = False) -> Any:
    """``myst_nb.glue`` that converts numpy scalars to plain Python numbers first."""
    from myst_nb import glue as _glue

    if hasattr(value, "item") and not hasattr(value, "savefig"):
        value = value.item()
    _glue(key, value, display=display)
    return value
