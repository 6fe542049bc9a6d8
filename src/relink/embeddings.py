"""The EmbeddingSet: cached embeddings of a cohort, one folder, row-aligned arrays.

Contract (DESIGN.md), row ``i`` of every array belongs to row ``i`` of
``rows.parquet``:

* ``rows.parquet`` — ``pair_id``, ``patient_id``, ``study_id``, ``cohort``,
  ``split`` and the 14 CheXpert label columns (float; NaN = missing);
* ``image.npy``, ``text.npy`` — float32 (n, d), projected and L2-normalised;
* ``image_trunk.npy``, ``text_trunk.npy`` — float32 pre-projection features
  (optional: a set written without them is accepted by the audit, refused by
  the DP step);
* ``meta.json`` — ``format_version``, and, when made by ``relink embed``,
  ``model`` (spec), ``weights_fingerprint``, ``cohort_fingerprint``,
  ``preprocess``, ``relink_version``. A hand-written set may carry only
  ``{"format_version": 1}`` (or an empty object).

Arrays are loaded memory-mapped so that a 400k-row set costs no RAM until used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import EmbeddingError
from .io import atomic_dir, write_json
from .labels import CHEXPERT_LABELS

FORMAT_VERSION = 1
ROW_COLUMNS: tuple[str, ...] = ("pair_id", "patient_id", "study_id", "cohort", "split") + CHEXPERT_LABELS
ARRAYS = ("image", "text", "image_trunk", "text_trunk")
REQUIRED_ARRAYS = ("image", "text")


@dataclass
class EmbeddingSet:
    """Row table, projected embeddings, optional trunk features and metadata."""

    rows: pd.DataFrame
    image: np.ndarray
    text: np.ndarray
    image_trunk: np.ndarray | None = None
    text_trunk: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def has_trunk(self) -> bool:
        return self.image_trunk is not None and self.text_trunk is not None

    def labels(self) -> np.ndarray:
        """(n, 14) float labels in canonical order (NaN = missing)."""
        return self.rows.loc[:, list(CHEXPERT_LABELS)].to_numpy(dtype=np.float64)

    def subset(self, mask: np.ndarray | pd.Series) -> "EmbeddingSet":
        """Rows selected by a boolean mask or an index array, arrays sliced alike."""
        idx = np.asarray(mask)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        take = lambda a: None if a is None else np.asarray(a[idx])  # noqa: E731
        return EmbeddingSet(
            self.rows.iloc[idx].reset_index(drop=True),
            take(self.image), take(self.text), take(self.image_trunk), take(self.text_trunk),
            dict(self.meta), None,
        )

    def split(self, name: str) -> "EmbeddingSet":
        return self.subset(self.rows["split"].to_numpy() == name)


def _check_rows(rows: pd.DataFrame, where: str) -> None:
    missing = [c for c in ("pair_id", "patient_id") if c not in rows.columns]
    if missing:
        raise EmbeddingError(f"{where}: rows.parquet lacks column(s) {', '.join(missing)}")
    dup = rows["pair_id"].astype(str).duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise EmbeddingError(f"{where}: rows.parquet row {i}: duplicate pair_id {rows['pair_id'].iat[i]!r}")


def _fill_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Add optional row columns a hand-written set may lack (labels missing, study = pair)."""
    rows = rows.copy()
    for col in ("pair_id", "patient_id"):
        rows[col] = rows[col].astype(str)
    if "study_id" not in rows.columns:
        rows["study_id"] = rows["pair_id"]
    for col, default in (("cohort", "unnamed"), ("split", "test")):
        if col not in rows.columns:
            rows[col] = default
    for col in CHEXPERT_LABELS:
        if col not in rows.columns:
            rows[col] = np.nan
        rows[col] = pd.to_numeric(rows[col], errors="coerce").astype("float64")
    return rows


def check_arrays(n: int, arrays: dict[str, np.ndarray | None], where: str, check_values: bool = True) -> None:
    """Shapes agree with ``n`` rows; projected arrays are finite and non-zero.

    Raises :class:`EmbeddingError` naming the array and the first bad row.
    """
    dims = {}
    for name, arr in arrays.items():
        if arr is None:
            continue
        if arr.ndim != 2:
            raise EmbeddingError(f"{where}: {name}.npy must be 2-D (rows, dim), got shape {arr.shape}")
        if arr.shape[0] != n:
            raise EmbeddingError(f"{where}: {name}.npy has {arr.shape[0]} rows but rows.parquet has {n} (misaligned)")
        dims[name] = arr.shape[1]
    if "image" in dims and "text" in dims and dims["image"] != dims["text"]:
        raise EmbeddingError(f"{where}: image.npy dim {dims['image']} != text.npy dim {dims['text']}")
    if not check_values:
        return
    for name in ("image", "text"):
        arr = arrays.get(name)
        if arr is None:
            continue
        step = 65536
        for start in range(0, arr.shape[0], step):
            block = np.asarray(arr[start:start + step], dtype=np.float32)
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                i = start + int(np.flatnonzero(~finite)[0])
                raise EmbeddingError(f"{where}: {name}.npy row {i} has non-finite values")
            norms = np.linalg.norm(block, axis=1)
            zero = norms <= 1e-12
            if zero.any():
                i = start + int(np.flatnonzero(zero)[0])
                raise EmbeddingError(f"{where}: {name}.npy row {i} has zero norm")


def load(path: str | os.PathLike, mmap: bool = True, require_trunk: bool = False, check_values: bool = True) -> EmbeddingSet:
    """Read an EmbeddingSet folder, checking its contract.

    ``require_trunk`` makes a set without trunk features an error (the DP
    step needs them). Projected arrays are returned as stored; callers that
    need unit norm use :func:`l2_normalise` (hand-written sets may not be).
    """
    path = Path(path)
    where = str(path)
    if not path.is_dir():
        raise EmbeddingError(f"embedding set not found: {path} (expected a folder with rows.parquet, image.npy, text.npy)")
    rows_file = path / "rows.parquet"
    if not rows_file.is_file():
        raise EmbeddingError(f"{where}: rows.parquet is missing")
    try:
        rows = pd.read_parquet(rows_file)
    except Exception as exc:
        raise EmbeddingError(f"{where}: cannot read rows.parquet ({exc})") from None
    _check_rows(rows, where)
    rows = _fill_rows(rows)
    arrays: dict[str, np.ndarray | None] = {}
    for name in ARRAYS:
        f = path / f"{name}.npy"
        if not f.is_file():
            if name in REQUIRED_ARRAYS:
                raise EmbeddingError(f"{where}: {name}.npy is missing")
            arrays[name] = None
            continue
        try:
            arrays[name] = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
        except Exception as exc:
            raise EmbeddingError(f"{where}: cannot read {name}.npy ({exc})") from None
    if require_trunk and (arrays["image_trunk"] is None or arrays["text_trunk"] is None):
        raise EmbeddingError(
            f"{where}: this embedding set has no trunk features (image_trunk.npy, text_trunk.npy); "
            "re-run `relink embed` (it writes them by default)"
        )
    check_arrays(len(rows), arrays, where, check_values=check_values)
    meta: dict[str, Any] = {}
    meta_file = path / "meta.json"
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise EmbeddingError(f"{where}: meta.json is not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise EmbeddingError(f"{where}: meta.json must hold a JSON object")
    return EmbeddingSet(rows, arrays["image"], arrays["text"], arrays["image_trunk"], arrays["text_trunk"], meta, path)


def save(es: EmbeddingSet, path: str | os.PathLike) -> Path:
    """Write an EmbeddingSet folder atomically (the whole folder appears at once)."""
    path = Path(path)
    arrays = {"image": es.image, "text": es.text, "image_trunk": es.image_trunk, "text_trunk": es.text_trunk}
    check_arrays(len(es.rows), arrays, str(path))
    rows = _fill_rows(es.rows)[list(ROW_COLUMNS)]
    meta = {"format_version": FORMAT_VERSION, **es.meta}
    with atomic_dir(path) as tmp:
        rows.to_parquet(tmp / "rows.parquet", index=False)
        for name, arr in arrays.items():
            if arr is not None:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
        write_json(tmp / "meta.json", meta)
    es.path = path
    return path


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise unit norm, float32."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)
