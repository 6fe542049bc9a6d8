"""The paper's leak scan: which files of a run are published, and the cohorts they are scanned against.

The scanner itself is :mod:`relink.leakscan`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def result_files(results: dict[str, Path]) -> list[Path]:
    files = []
    for name, folder in results.items():
        if name.startswith("_"):
            continue
        files += [p for p in sorted(Path(folder).rglob("*")) if p.suffix in (".parquet", ".csv", ".json") and p.is_file()
                  and not any(part.endswith("-internal") or part == "checkpoint" for part in p.relative_to(folder).parts[:-1])]
    return files


def cohort_frames(profile, results: dict[str, Path]) -> list[pd.DataFrame]:
    """The manifests of a run's cohorts (what outputs are scanned against)."""
    from ..cohort import read_cohort
    from .stages import Context, cohorts

    ctx = Context(profile, results["_root"], progress=False)
    return [read_cohort(p, validate_rows=False).frame for p in cohorts(ctx).values() if p is not None]
