"""Tidy metric tables: one row per (model, cohort, direction, negatives, level, N, K, estimator).

Columns (docs/design.md):

``model``, ``cohort``, ``direction`` (``image_to_report`` | ``report_to_image``),
``negatives`` (``random`` | ``pathology_matched`` | ``positive_set_matched`` | ...),
``level`` (``study`` | ``patient``), ``N`` (pool size; for the full pool the
candidate count), ``K``, ``estimator`` (``exact`` | ``monte_carlo``),
``metric`` (``recall`` by default; ``mrr``, ``median_rank`` rows carry K = 0),
``value``, ``ci_low``, ``ci_high``, ``chance``, ``lift``, ``n_queries``,
``coverage`` (fraction of queries whose pool could be filled; 1 for random
pools).

Matched rows of a hard-negative audit also carry ``paired_random_value``, ``paired_random_ci_low``,
``paired_random_ci_high`` and ``paired_random_lift``: random pools of the same N on the same covered
queries (NaN on other rows).

Provenance travels in the parquet schema metadata, under ``"provenance"`` in JSON
(``{"provenance": ..., "rows": [...]}``), and in a ``<file>.provenance.json`` sidecar for CSV.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import RelinkError
from .guard import Output
from .io import atomic_path, canonical, dumps, write_json

METRIC_COLUMNS: tuple[str, ...] = (
    "model", "cohort", "direction", "negatives", "level", "N", "K", "estimator", "metric",
    "value", "ci_low", "ci_high", "chance", "lift", "n_queries", "coverage",
)
FORMATS = (".csv", ".parquet", ".json")


def check_format(path: Path) -> str:
    """The lower-case extension of a table path; RelinkError unless .csv, .parquet or .json."""
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise RelinkError(f"{path}: output format must be one of {', '.join(FORMATS)} (by extension)")
    return ext


def side_files(path: str | os.PathLike) -> tuple[Path, ...]:
    """The files :func:`write_table` writes beside ``path`` (a CSV's provenance side file)."""
    path = Path(path)
    return (path.with_name(path.name + ".provenance.json"),) if path.suffix.lower() == ".csv" else ()


def table_output(flag: str, path: str | os.PathLike, work: str | os.PathLike | None = None) -> Output:
    """``path`` as a table output for :func:`relink.guard.claim`, its format checked, its side files
    declared (``work``: the work folder kept beside it)."""
    path = Path(path)
    try:
        check_format(path)
    except RelinkError as exc:
        raise RelinkError(f"{flag} {exc}") from None
    return Output(flag, path, "file", sides=side_files(path), work=None if work is None else Path(work))


def write_table(frame: pd.DataFrame, path: str | os.PathLike, provenance: dict[str, Any] | None = None) -> Path:
    """Write a table as .csv, .parquet or .json by extension, atomically, with provenance."""
    path = Path(path)
    ext = check_format(path)
    provenance = provenance or {}
    with atomic_path(path) as tmp:
        if ext == ".csv":
            frame.to_csv(tmp, index=False)
        elif ext == ".parquet":
            table = pa.Table.from_pandas(frame, preserve_index=False)
            meta = dict(table.schema.metadata or {})
            meta[b"provenance"] = dumps(provenance, indent=None).encode()
            pq.write_table(table.replace_schema_metadata(meta), tmp)
        else:
            rows = json.loads(frame.to_json(orient="records"))
            # rows keep the table's column order; the provenance is key-sorted
            tmp.write_text(json.dumps({"provenance": canonical(provenance), "rows": rows}, indent=1, allow_nan=False) + "\n")
    for side in side_files(path):
        write_json(side, provenance)
    return path


def read_table(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a table written by :func:`write_table`; returns ``(frame, provenance)``."""
    path = Path(path)
    ext = check_format(path)
    if not path.is_file():
        raise RelinkError(f"table not found: {path}")
    if ext == ".csv":
        side = path.with_name(path.name + ".provenance.json")
        prov = json.loads(side.read_text()) if side.is_file() else {}
        return pd.read_csv(path), prov
    if ext == ".parquet":
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(b"provenance", b"{}")
        return table.to_pandas(), json.loads(raw)
    obj = json.loads(path.read_text())
    return pd.DataFrame(obj.get("rows", [])), obj.get("provenance", {})
