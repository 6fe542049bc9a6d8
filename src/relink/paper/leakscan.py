"""The paper's leak scan (:mod:`relink.leakscan`): which files of a run are published, and the cohorts they
are scanned against."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def result_files(results: dict[str, Path]) -> list[Path]:
    """The files of a run's results that a chapter may publish: not the EmbeddingSets and checkpoints kept
    beside them (those hold row ids by design and are never published)."""
    files = []
    for name, folder in results.items():
        if name.startswith("_"):
            continue
        for p in sorted(Path(folder).rglob("*")):
            if p.suffix not in (".parquet", ".csv", ".json", ".html") or not p.is_file():
                continue
            parents = p.relative_to(folder).parents
            kept = any((Path(folder) / d / marker).is_file() for d in parents if str(d) != "."
                       for marker in ("rows.parquet", "open_clip_config.json"))
            if not kept:
                files.append(p)
    return files


def cohort_frames(profile, results: dict[str, Path]) -> list[pd.DataFrame]:
    """The manifests of a run's cohorts (what outputs are scanned against)."""
    from ..cohort import read_cohort
    from .stages import Context, cohorts

    ctx = Context(profile, results["_root"], progress=False)
    return [read_cohort(p, validate_rows=False).frame for p in cohorts(ctx).values() if p is not None]
