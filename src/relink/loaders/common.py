"""Pieces both official-dataset loaders share: CSV reading, bad-row bookkeeping,
label checks, the one-image-per-study policy and image stat checks.

A loader reports each bad row to a :class:`BadRows`: without ``skip_bad`` the first raises one line
naming the file or row, with it the row is counted by kind and dropped. Messages name files and ids,
never report text.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from ..cohort import check, escapes_root
from ..cohort import image_problem as image_file_problem
from ..errors import RelinkError
from ..labels import CHEXPERT_LABELS, LABEL_VALUES, label_value_problem

@dataclass
class LoadResult:
    """What a loader hands to ``write_cohort``: the rows, their image root, dropped rows by kind."""

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
        """``frame`` without the rows reported since the last drop (index labels: call it before a
        merge or re-index)."""
        if not self.rows:
            return frame
        kept = frame.loc[~frame.index.isin(list(self.rows))]
        self.rows = set()
        return kept


def find_file(folder: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``names`` that exists in ``folder``, or a RelinkError listing them."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise RelinkError(f"{what} not found in {folder} (looked for {', '.join(names)})")


def read_csv(path: Path, required: Iterable[str], dtype=str) -> pd.DataFrame:
    """Read the ``required`` columns of an official CSV (``.csv`` or ``.csv.gz``), ids as strings."""
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


def parse_labels(table: pd.DataFrame, source: Path, line_col: str, skip_bad: bool) -> pd.DataFrame:
    """A label table with the 14 columns as float (1, 0, -1, NaN) and a ``_bad_label`` flag (set under
    ``skip_bad`` so the rows it labels are dropped after the join; otherwise a bad value raises)."""
    out = table.copy()
    flagged = np.zeros(len(out), dtype=bool)
    for name in CHEXPERT_LABELS:
        raw = out[name]
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        wrong = ((values.isna() & ~blank(raw)) | (values.notna() & ~values.isin(list(LABEL_VALUES)))).to_numpy(dtype=bool)
        if wrong.any() and not skip_bad:
            i = int(np.flatnonzero(wrong)[0])
            more = int(wrong.sum()) - 1
            tail = f" (and {more} more in this column)" if more else ""
            # The kind of value, never the value: a free-text cell may hold a piece of a report.
            kind = label_value_problem(raw.iat[i]) or "a value that is not a label"
            raise RelinkError(f"{source} line {out[line_col].iat[i]}: label {name!r} holds {kind}, "
                              f"not 1, 0, -1 or blank{tail}; --skip-bad drops such rows")
        flagged |= wrong
        out[name] = values
    out["_bad_label"] = flagged
    return out


def one_per_study(frame: pd.DataFrame, views: Sequence[str], tiebreak: Sequence[str]) -> pd.DataFrame:
    """Keep one image per ``study_id``: the earliest view in ``views``, then ``tiebreak`` order
    (ascending, missing last), whatever the input row order."""
    rank = {v: i for i, v in enumerate(views)}
    keyed = frame.assign(_view_rank=frame["view"].map(rank).fillna(len(rank)))
    keyed = keyed.sort_values(["study_id", "_view_rank", *tiebreak], kind="mergesort", na_position="last")
    return keyed.drop_duplicates("study_id", keep="first").drop(columns="_view_rank")


def check_images(frame: pd.DataFrame, root: Path, bad: BadRows, progress: bool = True,
                 decode: bool = False) -> None:
    """Report rows whose ``image_path`` escapes ``root`` or is not a usable file (a ``stat``, or with
    ``decode`` a Pillow decode)."""
    from tqdm.auto import tqdm

    escaping = frame["image_path"].map(escapes_root).to_numpy(dtype=bool)
    bad.add_many(frame, escaping, "image path escapes root",
                 lambda row: f"image path {row['image_path']!r} escapes {root}")
    paths = frame["image_path"].to_numpy()
    base = str(root)  # plain string joins: pathlib costs more than the stat itself at 10^5 rows
    for index, rel, esc in tqdm(zip(frame.index, paths, escaping), total=len(frame),
                                desc="checking images", unit="img", disable=None if progress else True):
        problem = None if esc else image_file_problem(os.path.join(base, rel), decode)
        if problem:
            bad.add(index, "missing image", f"{problem}: {os.path.join(base, rel)}")


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


def flag_bad_labels(frame: pd.DataFrame, bad: BadRows, source: Path) -> pd.DataFrame:
    """Report cohort rows joined to a label record :func:`parse_labels` flagged; drop the flag."""
    flagged = frame["_bad_label"].fillna(False).to_numpy(dtype=bool)
    bad.add_many(frame, flagged, "bad label",
                 lambda row: f"{source} line {int(row['_label_line'])}: label value not 1, 0, -1 or blank")
    return frame.drop(columns="_bad_label")


def map_splits(frame: pd.DataFrame, names: dict[str, str], bad: BadRows, describe: Callable[[pd.Series], str]) -> None:
    """Map official split names onto the contract's in place; report unknown or missing ones."""
    raw = frame["split"].astype("string").str.strip().str.lower()
    mapped = raw.map(names)
    bad.add_many(frame, mapped.isna().to_numpy(dtype=bool), "bad split", describe)
    frame["split"] = mapped.astype(object)


def pick_sections(found: dict[str, pd.Series], sections: Sequence[str], fallback: Sequence[str]) -> pd.Series:
    """Row-wise retrieval text from cleaned section columns ('' = none): the requested ``sections``
    joined with a space, else the first non-empty of ``fallback``."""
    index = next(iter(found.values())).index
    text = pd.Series("", index=index, dtype=object)
    for name in sections:
        part = found[name]
        text = np.where(part == "", text, np.where(text == "", part, text + " " + part))
        text = pd.Series(text, index=index, dtype=object)
    for name in fallback:
        text = text.where(text != "", found[name])
    return text
