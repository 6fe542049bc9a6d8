"""The cohort contract: one row per image-report pair.

A cohort manifest is a parquet file with these columns (extra columns are
kept and ignored):

=============  ========================================================
``pair_id``     unique string id of the image-report pair
``patient_id``  string id of the patient (bootstrap clusters, patient-level hits)
``study_id``    string id of the imaging study the report belongs to
``image_path``  image file, relative to the cohort's image root; never absolute,
                never escaping the root with ``..``
``report``      the text used for retrieval (findings + impression by default)
``split``       ``train`` | ``validate`` | ``test`` (loaders map official names)
``view``        acquisition view, e.g. ``PA``, ``AP``, ``LATERAL``
``cohort``      cohort name, e.g. ``synthetic-internal``, ``mimic-cxr``
14 labels       the CheXpert observations of :data:`relink.labels.CHEXPERT_LABELS`,
                float: 1, 0, -1 or NaN (missing)
=============  ========================================================

The image root is stored in the parquet schema metadata under
``relink.image_root``: either a path relative to the manifest's own folder
(the synthetic cohort stores ``"."``, its images live beside the manifest) or
an absolute path (a real dataset whose images stay where the dataset keeps
them). A *cohort folder* is a folder holding ``cohort.parquet``; every
function that takes a cohort accepts either the folder or the manifest file.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import CohortError
from .io import atomic_path
from .labels import CHEXPERT_LABELS, label_problems

MANIFEST_NAME = "cohort.parquet"
ROOT_KEY = b"relink.image_root"
OWNER_KEY = b"relink.output"
TEXT_COLUMNS: tuple[str, ...] = (
    "pair_id", "patient_id", "study_id", "image_path", "report", "split", "view", "cohort",
)
REQUIRED_COLUMNS: tuple[str, ...] = TEXT_COLUMNS + CHEXPERT_LABELS
SPLITS: tuple[str, ...] = ("train", "validate", "test")


@dataclass(frozen=True)
class Problem:
    """One broken rule: which row (``None`` for the whole table), which column, why."""

    row: int | None
    pair_id: str | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.pair_id is not None:
            where.append(f"pair_id {self.pair_id!r}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return (", ".join(where) + ": " if where else "") + self.message


@dataclass
class Cohort:
    """A validated manifest and the folder its ``image_path`` values are relative to."""

    frame: pd.DataFrame
    image_root: Path
    manifest: Path | None = None

    def __len__(self) -> int:
        return len(self.frame)

    def image_file(self, i: int) -> Path:
        """Absolute path of row ``i``'s image."""
        return self.image_root / self.frame["image_path"].iat[i]

    def labels(self) -> np.ndarray:
        """(n, 14) float array of label values in canonical order (NaN = missing)."""
        return self.frame.loc[:, list(CHEXPERT_LABELS)].to_numpy(dtype=np.float64)

    def subset(self, mask: np.ndarray | pd.Series) -> "Cohort":
        return Cohort(self.frame.loc[np.asarray(mask)].reset_index(drop=True), self.image_root, self.manifest)


def escapes_root(p: str) -> bool:
    """True for an empty or absolute path, or one that climbs out of its root with ``..``."""
    if not p or os.path.isabs(p) or p.startswith(("/", "\\")) or (len(p) > 1 and p[1] == ":"):
        return True
    parts = PurePosixPath(p.replace("\\", "/")).parts
    return ".." in parts


def validate(
    frame: pd.DataFrame,
    image_root: str | os.PathLike | None = None,
    check_images: str | bool = "exists",
    max_problems: int | None = None,
) -> list[Problem]:
    """Check ``frame`` against the cohort contract; return the problems found (empty = valid).

    ``check_images``: ``"exists"`` (a non-empty file), ``"open"`` (Pillow decodes it) or ``False``;
    no file check without ``image_root``. Row numbers are 0-based positions in ``frame``.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        return [Problem(None, None, None, f"missing column(s): {', '.join(missing)}")]
    return list(itertools.islice(_problems(frame, image_root, check_images), max_problems))


def _problems(frame: pd.DataFrame, image_root, check_images) -> Iterator[Problem]:
    """The broken rules, in a fixed order; lazy so that image checks stop early."""
    pair_ids = frame["pair_id"].astype(str).to_numpy()
    for col in TEXT_COLUMNS:
        values = frame[col]
        bad = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        for i in np.flatnonzero(bad):
            yield Problem(int(i), pair_ids[i], col, "empty report" if col == "report" else "empty value")
    for i in np.flatnonzero(pd.Series(pair_ids).duplicated(keep="first").to_numpy()):
        yield Problem(int(i), pair_ids[i], "pair_id", "duplicate pair_id")
    for i, col, kind in label_problems(frame):
        yield Problem(i, pair_ids[i], col, f"label cell holds {kind}; a label is 1, 0, -1 or missing")
    paths = frame["image_path"].astype(str).to_numpy()
    for i, p in enumerate(paths):
        if escapes_root(p):
            yield Problem(i, pair_ids[i], "image_path", f"image path {p!r} is absolute or escapes the cohort root")
    if image_root is not None and check_images:
        root = Path(image_root)
        for i, p in enumerate(paths):
            problem = None if escapes_root(p) else image_problem(root / p, decode=check_images == "open")
            if problem:
                yield Problem(i, pair_ids[i], "image_path", f"{problem}: {root / p}")


def image_problem(path: str | os.PathLike, decode: bool = False) -> str | None:
    """Why ``path`` is not a usable image file, or ``None``; the message leaves the path to the caller."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "image file not found"
    except OSError as exc:
        return f"image file unreadable ({exc.__class__.__name__})"
    if not S_ISREG(st.st_mode):
        return "image path is not a file"
    if st.st_size == 0:
        return "image file is empty"
    if decode:
        from PIL import Image

        try:
            with Image.open(path) as im:
                im.load()
        except Exception as exc:  # Pillow raises several types on corrupt data
            return f"image file unreadable ({exc.__class__.__name__})"
    return None


def check(
    frame: pd.DataFrame,
    image_root: str | os.PathLike | None = None,
    check_images: str | bool = "exists",
    skip_bad: bool = False,
    source: str = "cohort",
) -> tuple[pd.DataFrame, list[Problem]]:
    """Validate; raise a :class:`CohortError` on the first problem, or with ``skip_bad`` drop bad rows
    and return their problems (a missing column always raises)."""
    problems = validate(frame, image_root, check_images)
    if not problems:
        return frame, []
    table_level = [p for p in problems if p.row is None]
    if table_level or not skip_bad:
        first = (table_level or problems)[0]
        more = f" (and {len(problems) - 1} more problem(s); --skip-bad drops bad rows)" if len(problems) > 1 else ""
        raise CohortError(f"{source}: {first}{more}")
    bad_rows = sorted({p.row for p in problems if p.row is not None})
    kept = frame.drop(frame.index[bad_rows]).reset_index(drop=True)
    if kept.empty:
        raise CohortError(f"{source}: every row has a problem; first: {problems[0]}")
    return kept, problems


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce column dtypes to the contract (strings for ids and text, float labels)."""
    out = frame.copy()
    for col in TEXT_COLUMNS:
        if col in out.columns:
            out[col] = out[col].astype(object).where(out[col].notna(), None)
            out[col] = out[col].map(lambda v: v if v is None else str(v))
    for col in CHEXPERT_LABELS:
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    return out


def manifest_path(path: str | os.PathLike) -> Path:
    """The manifest file for a cohort folder or manifest path."""
    path = Path(path)
    return path / MANIFEST_NAME if path.is_dir() else path


def write_cohort(frame: pd.DataFrame, path: str | os.PathLike, image_root: str | os.PathLike = ".",
                 owner: str = "cohort") -> Path:
    """Write a manifest atomically; ``path`` is a ``.parquet`` file or a cohort folder.

    ``owner`` (the command writing it) lets a command replace only its own manifests.
    """
    path = Path(path)
    target = path / MANIFEST_NAME if (path.is_dir() or path.suffix == "") else path
    root = Path(image_root)
    root_str = str(root.resolve()) if root.is_absolute() else root.as_posix()
    frame = normalise(frame)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[ROOT_KEY] = root_str.encode()
    meta[OWNER_KEY] = owner.encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp)
    return target


def read_cohort(
    path: str | os.PathLike,
    validate_rows: bool = True,
    check_images: str | bool = False,
    skip_bad: bool = False,
) -> Cohort:
    """Read a cohort folder or manifest; validate it unless told not to (images: the embedder checks them)."""
    target = manifest_path(path)
    if not target.is_file():
        raise CohortError(f"cohort manifest not found: {target}")
    try:
        table = pq.read_table(target)
    except Exception as exc:
        raise CohortError(f"cannot read cohort manifest {target}: {exc}") from None
    meta = table.schema.metadata or {}
    root_str = meta.get(ROOT_KEY, b".").decode()
    root = Path(root_str)
    if not root.is_absolute():
        root = (target.parent / root).resolve()
    frame = table.to_pandas()
    if validate_rows:
        # Before normalise(): coercing labels to numbers would turn "yes" into missing unnoticed.
        frame, _ = check(frame, root, check_images, skip_bad=skip_bad, source=str(target))
    return Cohort(normalise(frame), root, target)


def fingerprint(cohort: Cohort, columns: Iterable[str] = ("pair_id", "image_path", "report")) -> str:
    """A short content hash of ids, image paths and report text.

    Image bytes are not hashed (too slow at 400k images; releases are immutable); the image root is
    left out so that a moved cohort stays a cache hit.
    """
    h = hashlib.sha256()
    for col in columns:
        h.update(b"\x00" + col.encode() + b"\x00")
        h.update("\x1f".join(cohort.frame[col].astype(str)).encode())
    return h.hexdigest()[:16]


def patient_resplit(frame: pd.DataFrame, heldout_pairs: int, validate_pairs: int, seed: int = 0) -> pd.DataFrame:
    """A seeded, patient-disjoint re-split: patients in a random order fill ``test`` to at least
    ``heldout_pairs`` pairs, then ``validate`` to ``validate_pairs``; the rest are ``train``."""
    if heldout_pairs < 1 or validate_pairs < 0:
        raise CohortError(f"re-split sizes must be positive (held-out {heldout_pairs}, validate {validate_pairs})")
    if heldout_pairs + validate_pairs >= len(frame):
        raise CohortError(f"cannot hold out {heldout_pairs:,} + {validate_pairs:,} pairs from a cohort of "
                          f"{len(frame):,}: lower heldout_pairs or use the official split")
    patients, counts = np.unique(frame["patient_id"].astype(str).to_numpy(), return_counts=True)
    order = np.random.default_rng(seed).permutation(len(patients))
    cum = np.cumsum(counts[order])
    n_test = int(np.searchsorted(cum, heldout_pairs)) + 1
    n_val = int(np.searchsorted(cum, cum[n_test - 1] + validate_pairs)) + 1 - n_test if validate_pairs else 0
    split = np.full(len(patients), "train", dtype=object)
    split[order[:n_test]] = "test"
    split[order[n_test:n_test + n_val]] = "validate"
    out = frame.copy()
    out["split"] = split[np.searchsorted(patients, frame["patient_id"].astype(str).to_numpy())]
    return out


def refuse_output_over_cohort(out: str | os.PathLike, cohort: Cohort, flag: str = "--out") -> None:
    """Raise :class:`CohortError` when folder ``out`` holds the manifest or an image of ``cohort``
    (an output folder is replaced in one rename: the cohort would be deleted while read)."""
    target = Path(out).resolve()
    manifest = Path(cohort.manifest).resolve() if cohort.manifest is not None else None
    if manifest is not None and target in manifest.parents:
        raise CohortError(f"{flag} {out} holds the cohort's manifest ({cohort.manifest}); choose an --out outside it")
    root = Path(cohort.image_root).resolve()
    if target == root or target in root.parents:
        raise CohortError(f"{flag} {out} holds the cohort's images ({cohort.image_root}); choose an --out outside it")
    try:
        rel = PurePosixPath(target.relative_to(root).as_posix())
    except ValueError:
        return
    prefix = f"{rel}/"
    hit = next((p for p in cohort.frame["image_path"] if str(p) == str(rel) or str(p).startswith(prefix)), None)
    if hit is not None:
        raise CohortError(f"{flag} {out} holds the cohort's images (e.g. {hit}); choose an --out outside it")
