"""Pieces both official-dataset loaders share: CSV reading, bad-row bookkeeping,
label checks, the one-image-per-study policy and image stat checks.

Bad rows: a loader reports each problem to a :class:`BadRows`. Without
``skip_bad`` the first problem raises a :class:`~relink.errors.RelinkError`
naming the file or row (and how many more of that kind were found in the same
pass); with ``skip_bad`` the row is remembered, counted by kind, and dropped
by :meth:`BadRows.drop`. Messages name files and ids, never report text.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from ..cohort import check
from ..errors import RelinkError
from ..labels import CHEXPERT_LABELS, LABEL_VALUES

#: Kinds of bad rows, as counted in the ``--skip-bad`` summary.
KINDS = (
    "missing image", "image path escapes root", "missing report", "non-UTF-8 report",
    "empty report", "duplicate pair_id", "bad label", "bad split", "bad row",
)


@dataclass
class LoadResult:
    """What a loader hands to ``write_cohort``: the rows, their image root, what was skipped."""

    frame: pd.DataFrame
    image_root: Path
    skipped: Counter = field(default_factory=Counter)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


class BadRows:
    """Collects bad rows of one frame (by index label); raises at once unless ``skip_bad``."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.rows: set = set()
        self.counts: Counter = Counter()

    def add(self, index, kind: str, message: str, more: int = 0) -> None:
        if not self.skip_bad:
            tail = f" (and {more} more like it)" if more else ""
            raise RelinkError(f"{message}{tail}; --skip-bad drops such rows")
        if index not in self.rows:
            self.rows.add(index)
            self.counts[kind] += 1

    def add_many(self, frame: pd.DataFrame, mask, kind: str, describe: Callable[[pd.Series], str]) -> None:
        """Report every row of ``frame`` where ``mask`` holds; ``describe(row)`` words the problem."""
        hits = frame.loc[np.asarray(mask, dtype=bool)]
        if hits.empty:
            return
        if not self.skip_bad:
            self.add(hits.index[0], kind, describe(hits.iloc[0]), more=len(hits) - 1)
        for index in hits.index:
            self.add(index, kind, "")

    def drop(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` without the rows reported so far."""
        if not self.rows:
            return frame
        return frame.loc[~frame.index.isin(list(self.rows))]


def find_file(folder: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``names`` that exists in ``folder``, or a RelinkError listing them."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise RelinkError(f"{what} not found in {folder} (looked for {', '.join(names)})")


def read_csv(path: Path, required: Iterable[str], dtype=str) -> pd.DataFrame:
    """Read the ``required`` columns of an official CSV (``.csv`` or ``.csv.gz``).

    Ids are read as strings (no float round-trips); a missing column or an
    unreadable file is one RelinkError naming the file.
    """
    required = list(required)
    try:
        header = pd.read_csv(path, nrows=0)
        missing = [c for c in required if c not in header.columns]
        if missing:
            raise RelinkError(f"{path}: missing column(s): {', '.join(missing)}")
        return pd.read_csv(path, usecols=required, dtype=dtype, keep_default_na=True)
    except RelinkError:
        raise
    except (OSError, EOFError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise RelinkError(f"cannot read {path}: {exc.__class__.__name__}: {exc}") from None


def blank(values: pd.Series) -> np.ndarray:
    """True where a text cell is missing or only whitespace."""
    return (values.isna() | (values.astype("string").str.strip() == "")).to_numpy(dtype=bool)


def label_block(frame: pd.DataFrame, source: str, line_col: str, bad: BadRows) -> pd.DataFrame:
    """Parse the 14 label columns to float (1, 0, -1, NaN); report any other value.

    ``line_col`` holds the row's line number in ``source`` (for the message).
    """
    out = frame.copy()
    for name in CHEXPERT_LABELS:
        raw = out[name]
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        wrong = (values.isna() & ~blank(raw)) | (values.notna() & ~values.isin(list(LABEL_VALUES)))
        bad.add_many(
            out, wrong, "bad label",
            lambda row, name=name: f"{source} line {row[line_col]}: label {name!r} is {row[name]!r}, "
            "not 1, 0, -1 or blank",
        )
        out[name] = values
    return out


def escapes_root(path: str) -> bool:
    """True for an absolute path or one that climbs out of its root with ``..``."""
    if not path or os.path.isabs(path) or path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        return True
    return ".." in PurePosixPath(path.replace("\\", "/")).parts


def one_per_study(frame: pd.DataFrame, views: Sequence[str], tiebreak: Sequence[str]) -> pd.DataFrame:
    """Keep one image per ``study_id``: the earliest view in ``views``, then ``tiebreak`` order.

    ``tiebreak`` columns sort ascending with missing values last; the result is
    deterministic whatever the input row order.
    """
    rank = {v: i for i, v in enumerate(views)}
    keyed = frame.assign(_view_rank=frame["view"].map(rank).fillna(len(rank)))
    keyed = keyed.sort_values(["study_id", "_view_rank", *tiebreak], kind="mergesort", na_position="last")
    return keyed.drop_duplicates("study_id", keep="first").drop(columns="_view_rank")


def check_images(frame: pd.DataFrame, root: Path, bad: BadRows, progress: bool = True) -> None:
    """Report rows whose ``image_path`` escapes ``root`` or is not a non-empty file (stat only)."""
    from tqdm.auto import tqdm

    escaping = frame["image_path"].map(escapes_root).to_numpy(dtype=bool)
    bad.add_many(frame, escaping, "image path escapes root",
                 lambda row: f"image path {row['image_path']!r} (pair_id {row['pair_id']}) escapes {root}")
    paths = frame["image_path"].to_numpy()
    for index, rel, esc in tqdm(zip(frame.index, paths, escaping), total=len(frame),
                                desc="checking images", unit="img", disable=None if progress else True):
        if esc:
            continue
        try:
            size = os.stat(root / rel).st_size
            problem = "image file is empty" if size == 0 else None
        except FileNotFoundError:
            problem = "image file not found"
        except OSError as exc:
            problem = f"image file unreadable ({exc.__class__.__name__})"
        if problem:
            bad.add(index, "missing image", f"{problem}: {root / rel}")


def finish(frame: pd.DataFrame, image_root: Path, bad: BadRows, source: str) -> LoadResult:
    """Drop bad rows, check the cohort contract (images already checked) and count skips."""
    frame = bad.drop(frame).reset_index(drop=True)
    if frame.empty:
        raise RelinkError(f"{source}: no usable rows left" + (f" ({_summary(bad.counts)} skipped)" if bad.counts else ""))
    frame, problems = check(frame, image_root, check_images=False, skip_bad=bad.skip_bad, source=source)
    skipped = Counter(bad.counts)
    first_by_row = {}
    for p in problems:
        first_by_row.setdefault(p.row, p)
    for p in first_by_row.values():
        kind = "duplicate pair_id" if "duplicate" in p.message else "bad label" if p.column in CHEXPERT_LABELS else "bad row"
        skipped[kind] += 1
    return LoadResult(frame, image_root, skipped)


def _summary(counts: Counter) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


def skip_summary(result: LoadResult) -> str:
    """One line for the console: how many rows ``--skip-bad`` dropped, by kind."""
    return f"skipped {result.n_skipped} bad row(s): {_summary(result.skipped)}"
