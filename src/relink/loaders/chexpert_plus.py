"""CheXpert Plus (release 2024-04-01): PNG images, report sections, CheXbert labels.

Layout read (``--root``)::

    ROOT/df_chexpert_plus_240401.csv   path_to_image, frontal_lateral, ap_pa,
                                       deid_patient_id, section_findings,
                                       section_impression, split (train|valid), ...
    ROOT/PNG/{train,valid}/patientN/studyM/viewK_<frontal|lateral>.png
         (also accepted: ROOT/PNG/PNG/..., or train/ and valid/ directly in ROOT)
    ROOT/chexbert_labels/{impression,findings,report}_fixed.json
         (or directly in ROOT, or in --labels-dir): JSON Lines, one record per
         image: path_to_image and the 14 CheXpert names, 1/0/-1/null

Known quirk: ``path_to_image`` ends in ``.jpg`` while the released images are ``.png``; the ``.jpg``
file is used only when the ``.png`` one is missing (a local JPEG conversion).

Cohort rows (one per study, like the MIMIC-CXR loader):

* ids: ``pair_id`` = ``path_to_image`` without its extension
  (``train/patient00001/study1/view1_frontal``); ``patient_id`` =
  ``deid_patient_id``; ``study_id`` = ``patientN/studyM`` from the path;
* view: ``LATERAL`` for lateral images, else ``ap_pa`` upper-cased (``FRONTAL``
  when blank); kept when in ``views`` (default PA, AP);
* one image per study: view earliest in ``views``, then ``path_to_image`` order;
* report: ``section_findings`` / ``section_impression`` as requested (default
  both, findings first), else whichever exists; none -> empty-report bad row;
* split: ``train`` -> train, ``valid`` -> validate;
* labels (``label_source``): ``impression`` (default) reads ``impression_fixed.json`` and, for
  reports without an impression, ``findings_fixed.json`` when present (as MIMIC-CXR's labels come
  from the impression, else the findings); no label record: all labels missing.
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
    BadRows, LoadResult, blank, escapes_root, find_file, finish, map_splits,
    one_per_study, parse_labels, pick_sections, read_csv, image_file_problem,
)
from .sections import clean

COHORT_NAME = "chexpert-plus"
CSV_NAME = "df_chexpert_plus_240401.csv"
CSV_COLUMNS = ("path_to_image", "frontal_lateral", "ap_pa", "deid_patient_id",
               "section_findings", "section_impression", "split")
LABEL_FILES = {"impression": "impression_fixed.json", "findings": "findings_fixed.json",
               "report": "report_fixed.json"}
SPLIT_NAMES = {"train": "train", "valid": "validate", "validate": "validate", "test": "test"}
LABEL_KEYS = ["_label_line", "_bad_label", *CHEXPERT_LABELS]


def load_chexpert_plus(
    root: str | os.PathLike,
    sections: Sequence[str] = ("findings", "impression"),
    views: Sequence[str] = ("PA", "AP"),
    label_source: str = "impression",
    labels_dir: str | os.PathLike | None = None,
    skip_bad: bool = False,
    decode_images: bool = False,
    progress: bool = True,
) -> LoadResult:
    """Build the CheXpert Plus cohort frame (contract columns) from the official files."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise RelinkError(f"--root folder not found: {root}")
    if label_source not in LABEL_FILES:
        raise RelinkError(f"label source {label_source!r} is not one of {', '.join(LABEL_FILES)}")
    csv_path = find_file(root, [CSV_NAME, *sorted(p.name for p in root.glob("df_chexpert_plus_*.csv"))],
                         "CheXpert Plus table")
    image_root = _png_base(root)
    views = [v.strip().upper() for v in views if v.strip()]
    bad = BadRows(skip_bad)

    frame = _read_table(csv_path, views, bad)
    found = {name: frame[f"section_{name}"].map(lambda v: clean(v) if isinstance(v, str) else "")
             for name in ("findings", "impression")}
    frame["report"] = pick_sections(found, sections, ("impression", "findings"))
    bad.add_many(frame, (frame["report"] == "").to_numpy(), "empty report",
                 lambda r: f"{csv_path} row {r['_line']}: no findings or impression text "
                           f"for {r['path_to_image']}")
    frame["_no_impression"] = found["impression"] == ""
    frame = bad.drop(frame)

    map_splits(frame, SPLIT_NAMES, bad,
               lambda r: f"{csv_path} row {r['_line']}: split {r['split']!r} is not train or valid")
    frame = bad.drop(frame)
    frame = _join_labels(frame, root, Path(labels_dir) if labels_dir else None, label_source, bad)
    _resolve_images(frame, image_root, csv_path, bad, progress, decode_images)
    frame = frame.loc[:, [*TEXT_COLUMNS, *CHEXPERT_LABELS]]
    return finish(frame, image_root, bad, source=f"chexpert-plus cohort from {root}")


def _png_base(root: Path) -> Path:
    for base in (root / "PNG" / "PNG", root / "PNG", root):
        if (base / "train").is_dir() or (base / "valid").is_dir():
            return base
    raise RelinkError(f"no image folder with train/ or valid/ in {root}, {root / 'PNG'} or {root / 'PNG' / 'PNG'}")


def _label_key(paths: pd.Series) -> pd.Series:
    """Join key for ``path_to_image``: forward slashes, and the CSV's ``.jpg`` suffix."""
    return paths.astype("string").str.strip().str.replace("\\", "/", regex=False).str.replace(
        r"\.png$", ".jpg", regex=True, case=False)


def _read_table(csv_path: Path, views: list[str], bad: BadRows) -> pd.DataFrame:
    df = read_csv(csv_path, CSV_COLUMNS)
    # Data row number (1 = first row under the header); report text spans lines, so no line numbers.
    df["_line"] = np.arange(len(df)) + 1
    df["path_to_image"] = df["path_to_image"].str.strip()
    bad.add_many(df, blank(df["path_to_image"]) | blank(df["deid_patient_id"]), "bad row",
                 lambda r: f"{csv_path} row {r['_line']}: empty path_to_image or deid_patient_id")
    df = bad.drop(df)
    df["_key"] = _label_key(df["path_to_image"])
    bad.add_many(df, df["_key"].duplicated(keep="first").to_numpy(), "duplicate pair_id",
                 lambda r: f"{csv_path} row {r['_line']}: duplicate path_to_image {r['path_to_image']!r}")
    df = bad.drop(df)

    lateral = (df["frontal_lateral"].astype("string").str.strip().str.upper() == "LATERAL").fillna(False)
    ap_pa = df["ap_pa"].astype("string").str.strip().str.upper()
    df["view"] = np.where(lateral.to_numpy(dtype=bool), "LATERAL", ap_pa.where(~ap_pa.isna() & (ap_pa != ""), "FRONTAL"))
    df = df.loc[df["view"].isin(views).to_numpy(dtype=bool)].copy()
    if df.empty:
        raise RelinkError(f"{csv_path}: no image has a view in {', '.join(views)}")

    rel = df["_key"].str.replace(r"\.jpg$", "", regex=True, case=False)
    df["pair_id"] = rel.astype(object)
    df["study_id"] = rel.str.split("/").map(lambda parts: "/".join(parts[-3:-1])).astype(object)
    df["patient_id"] = df["deid_patient_id"].str.strip().astype(object)
    df["cohort"] = COHORT_NAME
    return one_per_study(df, views, ["path_to_image"]).reset_index(drop=True)


def _find_labels(root: Path, labels_dir: Path | None, name: str, required: bool) -> Path | None:
    folders = [labels_dir] if labels_dir else [root / "chexbert_labels", root]
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    if required:
        raise RelinkError(f"CheXbert label file {name} not found in {' or '.join(map(str, folders))}")
    return None


def _read_labels(path: Path, skip_bad: bool) -> pd.DataFrame:
    try:
        table = pd.read_json(path, lines=True, dtype=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise RelinkError(f"cannot read {path} as JSON Lines: {exc.__class__.__name__}: {exc}") from None
    missing = [c for c in ("path_to_image", *CHEXPERT_LABELS) if c not in table.columns]
    if missing:
        raise RelinkError(f"{path}: missing column(s): {', '.join(missing)}")
    table["_label_line"] = np.arange(len(table)) + 1
    table["_key"] = _label_key(table["path_to_image"])
    table = table.drop_duplicates("_key", keep="first")
    return parse_labels(table, path, "_label_line", skip_bad).loc[:, ["_key", *LABEL_KEYS]]


def _join_labels(frame: pd.DataFrame, root: Path, labels_dir: Path | None, source: str, bad: BadRows) -> pd.DataFrame:
    path = _find_labels(root, labels_dir, LABEL_FILES[source], required=True)
    out = frame.merge(_read_labels(path, bad.skip_bad), on="_key", how="left")
    out["_label_file"] = str(path)
    fallback = _find_labels(root, labels_dir, LABEL_FILES["findings"], required=False) if source == "impression" else None
    if fallback is not None:
        backup = frame.loc[:, ["_key"]].merge(_read_labels(fallback, bad.skip_bad), on="_key", how="left")
        use = pd.Series(out["_no_impression"].to_numpy(dtype=bool), index=out.index)
        for col in LABEL_KEYS:
            out[col] = out[col].where(~use, backup[col])
        out["_label_file"] = np.where(use, str(fallback), str(path))
    flagged = out["_bad_label"].fillna(False).to_numpy(dtype=bool)
    bad.add_many(out, flagged, "bad label",
                 lambda r: f"{r['_label_file']} line {int(r['_label_line'])}: label value not 1, 0, -1 or blank")
    out = bad.drop(out.drop(columns="_bad_label"))
    for name in CHEXPERT_LABELS:
        out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    return out.reset_index(drop=True)


def _resolve_images(frame: pd.DataFrame, base: Path, csv_path: Path, bad: BadRows, progress: bool,
                    decode: bool) -> None:
    """Set ``image_path`` (the ``.png`` file, else the ``.jpg`` one) and report unusable rows."""
    from tqdm.auto import tqdm

    paths, root = [], str(base)
    rows = zip(frame.index, frame["path_to_image"].to_numpy(), frame["_line"].to_numpy())
    for index, given, line in tqdm(rows, total=len(frame), desc="checking images", unit="img",
                                   disable=None if progress else True):
        given = given.replace("\\", "/")
        png = given[:-4] + ".png" if given.lower().endswith(".jpg") else given
        paths.append(png)
        if escapes_root(png):
            bad.add(index, "image path escapes root", f"{csv_path} row {line}: image path {given!r} escapes {base}")
            continue
        problem = image_file_problem(os.path.join(root, png), decode)
        if problem and png != given and image_file_problem(os.path.join(root, given), decode) is None:
            paths[-1], problem = given, None
        if problem:
            bad.add(index, "missing image", f"{problem}: {os.path.join(root, png)} ({csv_path.name} row {line})")
    frame["image_path"] = paths
