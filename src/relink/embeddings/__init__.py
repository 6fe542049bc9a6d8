"""The EmbeddingSet: cached embeddings of a cohort, one folder, row-aligned arrays.

Contract (docs/design.md), row ``i`` of every array belongs to row ``i`` of
``rows.parquet``:

* ``rows.parquet`` — ``pair_id``, ``patient_id``, ``study_id``, ``cohort``,
  ``split`` and the 14 CheXpert label columns (float; NaN = missing);
* ``image.npy``, ``text.npy`` — float32 (n, d), projected and L2-normalised;
* ``image_trunk.npy``, ``text_trunk.npy`` — float32 pre-projection features
  (optional: accepted by the audit, refused by the DP step);
* ``meta.json`` — ``format_version``, and, when made by ``relink embed``,
  ``model`` (spec), ``weights_fingerprint``, ``cohort_fingerprint``,
  ``preprocess``, ``relink_version`` (a hand-written set may carry only
  ``{"format_version": 1}`` or an empty object).

Arrays are memory-mapped and read in blocks with explicit reads
(:class:`~relink.embeddings.rows.RowSource`), so reading a set never grows
the resident set to the size of its files. Validated once, where it enters
(:func:`load`, :meth:`EmbeddingSet.from_arrays`), in one streaming pass:
shapes aligned, every value finite, projected rows of non-zero norm,
``pair_id`` unique, ``patient_id`` present, labels 1/0/-1/missing; an
:class:`EmbeddingError` names the file and row (never a value). Every
consumer then takes the set as valid.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import EmbeddingError
from ..io import atomic_dir, write_json
from ..labels import CHEXPERT_LABELS, label_problems
from .rows import RowSource, norms, unit_rows

FORMAT_VERSION = 1
ROW_COLUMNS: tuple[str, ...] = ("pair_id", "patient_id", "study_id", "cohort", "split") + CHEXPERT_LABELS
ARRAYS = ("image", "text", "image_trunk", "text_trunk")
REQUIRED_ARRAYS = ("image", "text")
BLOCK_ROWS = 65536  # rows read at once when streaming a (memory-mapped) array
_CHECK_BYTES = 8 << 20  # bytes of one array read at once when validating
ZERO_NORM = 1e-12  # a projected row at most this long has no direction to rank by


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

    def split_mask(self, name: str, flag: str = "--split") -> np.ndarray:
        """(n,) bool: the rows of split ``name``; a split the set does not have is one error naming ``flag``."""
        splits = sorted(map(str, self.rows["split"].unique()))
        if name not in splits:
            raise EmbeddingError(f"{flag} {name!r}: {self.where} has no such rows (splits: {', '.join(splits)})")
        return self.rows["split"].to_numpy() == name

    @property
    def cohort_name(self) -> str:
        """The cohort label of these rows: the one name, or the sorted names joined by ``+``."""
        return "+".join(sorted(map(str, self.rows["cohort"].dropna().unique()))) if "cohort" in self.rows else ""

    @property
    def where(self) -> str:
        """How messages name this set: its folder, or "embedding set" for one made in code."""
        return str(self.path) if self.path is not None else "embedding set"

    def unit(self, name: str = "image", order: np.ndarray | None = None) -> np.ndarray:
        """Unit-norm float32 rows of ``name`` (``image``/``text``), in ``order`` if given: a fresh array, made in
        blocks, with no checks (the set was validated when it was made)."""
        arr = getattr(self, name)
        n = len(arr) if order is None else len(order)
        out = np.empty((n, arr.shape[1]), dtype=np.float32)
        for start in range(0, n, BLOCK_ROWS):
            rows = slice(start, start + BLOCK_ROWS)
            block = np.asarray(arr[rows] if order is None else arr[np.asarray(order)[rows]], dtype=np.float32)
            out[rows] = unit_rows(block)
        return out

    @classmethod
    def from_arrays(cls, rows: pd.DataFrame, image, text, image_trunk=None, text_trunk=None,
                    meta: dict[str, Any] | None = None, where: str = "embedding set") -> "EmbeddingSet":
        """A set made in code, validated as :func:`load` validates a folder (rows filled as for a hand-written set)."""
        _check_rows(rows, where)
        rows = _fill_rows(rows)
        arrays = {"image": image, "text": text, "image_trunk": image_trunk, "text_trunk": text_trunk}
        arrays = {k: (None if v is None else np.asarray(v)) for k, v in arrays.items()}
        check_arrays(len(rows), arrays, where)
        return cls(rows, arrays["image"], arrays["text"], arrays["image_trunk"], arrays["text_trunk"], dict(meta or {}))


def _check_rows(rows: pd.DataFrame, where: str) -> None:
    missing = [c for c in ("pair_id", "patient_id") if c not in rows.columns]
    if missing:
        raise EmbeddingError(f"{where}: rows.parquet lacks column(s) {', '.join(missing)}")
    for col in ("pair_id", "patient_id"):
        empty = rows[col].isna().to_numpy() | (rows[col].astype(str).str.strip() == "").to_numpy()
        if empty.any():
            raise EmbeddingError(f"{where}: rows.parquet row {int(np.flatnonzero(empty)[0])} has no {col}")
    dup = rows["pair_id"].astype(str).duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise EmbeddingError(f"{where}: rows.parquet row {i}: its pair_id repeats an earlier row's")
    bad = label_problems(rows, max_problems=1)
    if bad:
        i, col, kind = bad[0]
        raise EmbeddingError(f"{where}: rows.parquet row {i}, column {col!r} holds {kind}; a label is 1, 0, -1 or missing")


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
    """Shapes agree with ``n`` rows; every value is finite and projected rows are non-zero (read in blocks of
    about 8 MB). Raises :class:`EmbeddingError` naming the array and the first bad row."""
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
    for name, arr in arrays.items():
        if arr is None:
            continue
        projected = name in REQUIRED_ARRAYS
        block_rows = max(1, _CHECK_BYTES // (4 * max(1, arr.shape[1])))
        source = RowSource(arr, normalise=False)
        for start in range(0, arr.shape[0], block_rows):
            block = source.read(slice(start, start + block_rows))
            sq = np.einsum("ij,ij->i", block, block)  # one pass: a NaN or inf anywhere in a row shows here
            odd = np.flatnonzero(~np.isfinite(sq))
            if len(odd):
                finite = np.isfinite(block[odd]).all(axis=1)
                if not finite.all():
                    i = start + int(odd[~finite][0])
                    raise EmbeddingError(f"{where}: {name}.npy row {i} has non-finite values")
            if projected:
                zero = np.flatnonzero(norms(block, sq) <= ZERO_NORM)
                if len(zero):
                    raise EmbeddingError(f"{where}: {name}.npy row {start + int(zero[0])} has zero norm")
        source.close()


def _release_arrow_memory() -> None:
    """Hand Arrow's freed read buffers back to the operating system (its allocator keeps a parquet read's
    buffers after the frame is made: memory an out-of-core audit would carry for its whole run)."""
    import pyarrow as pa

    release = getattr(pa.default_memory_pool(), "release_unused", None)
    if release is not None:
        release()


def load(path: str | os.PathLike, mmap: bool = True, require_trunk: bool = False, check_values: bool = True) -> EmbeddingSet:
    """Read an EmbeddingSet folder, checking its contract; ``require_trunk``: a set without trunk features is
    an error (the DP step needs them). Arrays are returned as stored (unit rows: :meth:`EmbeddingSet.unit`)."""
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
    _release_arrow_memory()
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


_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def _looks_local(text: str) -> bool:
    return ("/" in text or "\\" in text or text.startswith(("~", ".")) or text.lower().endswith(_CHECKPOINT_SUFFIXES))


def public_model_name(spec: Any, fingerprint: Any = None) -> str:
    """The model as an output may name it: its spec, except that a local path never appears.

    Built-in names, pretrained tags and ``hf-hub:`` specs are kept; a local
    checkpoint (``NAME:FILE``) or folder (``DIR``, ``local-dir:DIR``) is named
    by its architecture, when given, and its weights fingerprint.
    """
    text = "" if spec is None else str(spec).strip()
    weights = f"weights {fingerprint}" if fingerprint else "weights not fingerprinted"
    if not text:
        return ""
    if text.startswith("hf-hub:"):
        return text
    if text.startswith(("local-dir:", "file:")):
        return f"local checkpoint ({weights})"
    name, sep, rest = text.partition(":")
    if sep and len(name) == 1 and rest.startswith(("\\", "/")):  # a Windows drive letter, not NAME:FILE
        return f"local checkpoint ({weights})"
    if sep and _looks_local(rest):
        return f"{name} with a local checkpoint ({weights})"
    if not sep and _looks_local(text):
        return f"local checkpoint ({weights})"
    return text


def public_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta.json`` as an output may record it: the model named by :func:`public_model_name`."""
    out = dict(meta)
    if "model" in out:
        out["model"] = public_model_name(out.get("model"), out.get("weights_fingerprint"))
    return out
