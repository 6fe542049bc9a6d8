"""MIMIC-CXR-JPG (2.0.0 / 2.1.0) images joined with the MIMIC-CXR free-text reports.

Layout read (``--images`` is the MIMIC-CXR-JPG root, ``--reports`` the
folder the MIMIC-CXR report archive unpacks to)::

    IMAGES/files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg
    IMAGES/mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id,
                                             ViewPosition, StudyDate, StudyTime
    IMAGES/mimic-cxr-2.0.0-split.csv.gz      dicom_id, split (train|validate|test)
    IMAGES/mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id, 14 labels
                                             (1.0, 0.0, -1.0 or blank)
    REPORTS/files/pXX/pSUBJECT/sSTUDY.txt    (or REPORTS/pXX/... directly)

Tables may also be uncompressed ``.csv``.

Cohort rows (one per study):

* ids: ``pair_id`` = dicom_id, ``patient_id`` = subject_id, ``study_id`` = study_id, the bare
  strings of the official tables (no ``p``/``s`` prefix);
* views: only images whose ViewPosition is in ``views`` (default PA, AP);
* one image per study: the view earliest in ``views``, then the earliest StudyDate, StudyTime, then
  the smallest dicom_id, chosen before files are checked (a missing chosen image is a bad row, never
  silently replaced);
* report: sections of the study's ``.txt`` (see :mod:`.sections`);
* labels: the study's row of the chexpert table (a study absent from it has
  all labels missing); uncertain stays -1, blank is NaN;
* ``image_path`` relative to ``--images``; the image root is ``--images``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..cohort import TEXT_COLUMNS
from ..errors import RelinkError
from ..labels import CHEXPERT_LABELS
from .common import (
    BadRows, LoadResult, blank, check_images, find_file, finish, flag_bad_labels, map_splits,
    one_per_study, parse_labels, read_csv,
)
from .sections import select_report

COHORT_NAME = "mimic-cxr"
METADATA = "mimic-cxr-2.0.0-metadata.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"
SPLIT_NAMES = {"train": "train", "validate": "validate", "test": "test"}
ID_COLUMNS = ("dicom_id", "subject_id", "study_id")


def load_mimic_cxr(
    images: str | os.PathLike,
    reports: str | os.PathLike,
    sections: Sequence[str] = ("findings", "impression"),
    views: Sequence[str] = ("PA", "AP"),
    skip_bad: bool = False,
    decode_images: bool = False,
    progress: bool = True,
) -> LoadResult:
    """Build the MIMIC-CXR cohort frame (contract columns) from the official files."""
    images = Path(images).resolve()
    if not images.is_dir():
        raise RelinkError(f"--images folder not found: {images}")
    if not (images / "files").is_dir():
        raise RelinkError(f"{images} has no files/ folder: --images must be the MIMIC-CXR-JPG root")
    report_base = _report_base(Path(reports))
    views = [v.strip().upper() for v in views if v.strip()]
    bad = BadRows(skip_bad)

    frame = _frontal_images(images, views, bad)
    frame = _join_splits(frame, images, bad)
    frame = _join_labels(frame, images, bad)

    sub, study = frame["subject_id"], frame["study_id"]
    frame["image_path"] = "files/p" + sub.str[:2] + "/p" + sub + "/s" + study + "/" + frame["dicom_id"] + ".jpg"
    check_images(frame, images, bad, progress, decode=decode_images)
    frame = bad.drop(frame)

    frame["report"] = _read_reports(frame, report_base, sections, bad, progress)
    frame = frame.assign(pair_id=frame["dicom_id"], patient_id=frame["subject_id"], cohort=COHORT_NAME)
    frame = frame.loc[:, [*TEXT_COLUMNS, *CHEXPERT_LABELS]]
    return finish(frame, images, bad, source=f"mimic-cxr cohort from {images}")


def _report_base(reports: Path) -> Path:
    if not reports.is_dir():
        raise RelinkError(f"--reports folder not found: {reports}")
    for base in (reports / "files", reports):
        if base.is_dir() and any(p.is_dir() for p in base.glob("p[0-9][0-9]")):
            return base
    raise RelinkError(f"no pXX report folders in {reports} or {reports / 'files'}: "
                      "--reports must be the unpacked MIMIC-CXR reports folder")


def _frontal_images(images: Path, views: list[str], bad: BadRows) -> pd.DataFrame:
    path = find_file(images, [METADATA + ".gz", METADATA], "MIMIC-CXR-JPG metadata table")
    meta = read_csv(path, [*ID_COLUMNS, "ViewPosition", "StudyDate", "StudyTime"])
    meta["_line"] = np.arange(len(meta)) + 2
    for col in ID_COLUMNS:
        meta[col] = meta[col].str.strip()
    empty = blank(meta["dicom_id"]) | blank(meta["subject_id"]) | blank(meta["study_id"])
    bad.add_many(meta, empty, "bad row", lambda r: f"{path} line {r['_line']}: empty dicom_id, subject_id or study_id")
    meta = bad.drop(meta)
    bad.add_many(meta, meta["dicom_id"].duplicated(keep="first"), "duplicate pair_id",
                 lambda r: f"{path} line {r['_line']}: duplicate dicom_id {r['dicom_id']}")
    meta = bad.drop(meta)

    meta["view"] = meta["ViewPosition"].astype("string").str.strip().str.upper()
    meta = meta.loc[meta["view"].isin(views).fillna(False).to_numpy(dtype=bool)].copy()
    if meta.empty:
        raise RelinkError(f"{path}: no image has a ViewPosition in {', '.join(views)}")
    meta["_date"] = pd.to_numeric(meta["StudyDate"], errors="coerce")
    meta["_time"] = pd.to_numeric(meta["StudyTime"], errors="coerce")
    meta = one_per_study(meta, views, ["_date", "_time", "dicom_id"])
    return meta.drop(columns=["ViewPosition", "StudyDate", "StudyTime", "_date", "_time"]).reset_index(drop=True)


def _join_splits(frame: pd.DataFrame, images: Path, bad: BadRows) -> pd.DataFrame:
    path = find_file(images, [SPLIT + ".gz", SPLIT], "MIMIC-CXR-JPG split table")
    split = read_csv(path, ["dicom_id", "split"])
    split["_split_line"] = np.arange(len(split)) + 2
    split["dicom_id"] = split["dicom_id"].str.strip()
    split = split.drop_duplicates("dicom_id", keep="first")
    frame = frame.merge(split, on="dicom_id", how="left")

    def describe(row: pd.Series) -> str:
        if pd.isna(row["_split_line"]):
            return f"dicom_id {row['dicom_id']} has no row in {path}"
        return f"{path} line {int(row['_split_line'])}: split {row['split']!r} is not train, validate or test"

    map_splits(frame, SPLIT_NAMES, bad, describe)
    return bad.drop(frame).drop(columns="_split_line").reset_index(drop=True)


def _join_labels(frame: pd.DataFrame, images: Path, bad: BadRows) -> pd.DataFrame:
    path = find_file(images, [CHEXPERT + ".gz", CHEXPERT], "MIMIC-CXR-JPG chexpert label table")
    labels = read_csv(path, ["study_id", *CHEXPERT_LABELS])
    labels["_label_line"] = np.arange(len(labels)) + 2
    labels["study_id"] = labels["study_id"].str.strip()
    labels = parse_labels(labels.drop_duplicates("study_id", keep="first"), path, "_label_line", bad.skip_bad)
    frame = frame.merge(labels, on="study_id", how="left")
    frame = flag_bad_labels(frame, bad, path)
    return bad.drop(frame).drop(columns="_label_line").reset_index(drop=True)


def _read_reports(frame: pd.DataFrame, base: Path, sections: Sequence[str], bad: BadRows, progress: bool) -> pd.Series:
    from tqdm.auto import tqdm

    texts = pd.Series("", index=frame.index, dtype=object)
    rows = zip(frame.index, frame["subject_id"].to_numpy(), frame["study_id"].to_numpy())
    root = str(base)
    for index, sub, study in tqdm(rows, total=len(frame), desc="reading reports", unit="report",
                                  disable=None if progress else True):
        path = os.path.join(root, f"p{sub[:2]}", f"p{sub}", f"s{study}.txt")
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            bad.add(index, "missing report", f"report file not found: {path}")
            continue
        except OSError as exc:
            bad.add(index, "missing report", f"report file unreadable: {path} ({exc.__class__.__name__})")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.add(index, "non-UTF-8 report", f"report file is not valid UTF-8 (byte {exc.start}): {path}")
            continue
        # Text-mode newlines, as the official parser reads the files.
        text = select_report(text.replace("\r\n", "\n").replace("\r", "\n"), f"s{study}", sections)
        if not text:
            bad.add(index, "empty report", f"no usable section (findings, impression, last paragraph "
                                           f"or comparison) in report file {path}")
            continue
        texts[index] = text
    return texts
