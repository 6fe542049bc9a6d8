"""A synthetic MIMIC-CXR-JPG + MIMIC-CXR reports release (layout: see :mod:`.official`).

Files and columns follow :mod:`relink.loaders.mimic_cxr` and the official
releases (the names the test fixtures were checked against)::

    mimic-cxr-jpg/files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg     8-bit grey JPEG, quality 95
    mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id,
        PerformedProcedureStepDescription, ViewPosition (PA|AP|LATERAL|LL), Rows, Columns,
        StudyDate (YYYYMMDD, shifted to 21xx), StudyTime (HHMMSS.fff), ProcedureCodeSequence_CodeMeaning,
        ViewCodeSequence_CodeMeaning, PatientOrientationCodeSequence_CodeMeaning
    mimic-cxr-jpg/mimic-cxr-2.0.0-split.csv.gz      dicom_id, study_id, subject_id, split
    mimic-cxr-jpg/mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id, 14 labels (alphabetical;
        1.0, 0.0, -1.0 or blank); studies of the unlabelled quirk have no row
    mimic-cxr-reports/files/pXX/pSUBJECT/sSTUDY.txt  every study, lateral-only ones included

Ids: ``subject_id`` 1xxxxxxx and ``study_id`` 5xxxxxxx are seeded bijections of the patient index
(and study number), distinct by construction. Reports use the official text layout: a ``FINAL REPORT``
title, `` NAME:`` headers, lines of at most 77 characters starting with a space; ``___`` for
de-identified spans.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import textwrap
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .official import Layout, OfficialDataset, Task, Visit, build, ensure_dir, pair_row

IMAGES, REPORTS = "mimic-cxr-jpg", "mimic-cxr-reports"
TABLES = {"metadata": "mimic-cxr-2.0.0-metadata.csv.gz", "split": "mimic-cxr-2.0.0-split.csv.gz",
          "chexpert": "mimic-cxr-2.0.0-chexpert.csv.gz"}
LABEL_COLUMNS = sorted([
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices"])
VIEW_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral", "LL": "left lateral"}
TITLE = " " * 33 + "FINAL REPORT"
INDICATIONS = ("___ with cough.", "___-year-old man with shortness of breath.",
               "___F with fever, evaluate for pneumonia.", "Evaluate for interval change.",
               "___M status post line placement, assess position.", "Chest pain.")
# Odd and not a multiple of 5: multiplying by it permutes the residues mod 10**7.
SCRAMBLE = 3_141_593
SPAN = 10**7


@functools.lru_cache(maxsize=16)
def _offset(seed: int, salt: int) -> int:
    return int(np.random.SeedSequence([seed, salt]).generate_state(1)[0]) % SPAN


def _scramble(value: int, seed: int, salt: int) -> int:
    return (SCRAMBLE * value + _offset(seed, salt)) % SPAN


def patient_ids(patients: int, seed: int) -> list[str]:
    return [str(10_000_000 + _scramble(i, seed, 17)) for i in range(patients)]


def study_id(task: Task, k: int) -> str:
    # 8 slots per patient: a patient has at most 6 studies (relink.synth.anatomy.STUDY_COUNT_P).
    return str(50_000_000 + _scramble(task.index * 8 + k, task.seed, 29))


def _wrap(text: str) -> list[str]:
    lines = textwrap.wrap(text, 76, break_long_words=False, break_on_hyphens=False)
    return [" " + line for line in lines]


def report_text(visit: Visit, exam: str) -> str:
    """The report file of one study, with its quirk (missing sections, no headers)."""
    if visit.kind == "no_headers":
        lines = [TITLE, " CHEST RADIOGRAPH PERFORMED ON ___", " ", *_wrap(visit.findings), " ",
                 *_wrap(visit.impression)]
        return "\n".join(lines) + "\n"
    technique = "Chest PA and lateral." if "LAT" in exam else "Single frontal view of the chest."
    lines = [TITLE, f" EXAMINATION:  {exam}", " ", f" INDICATION:  {INDICATIONS[visit.style % len(INDICATIONS)]}",
             " ", f" TECHNIQUE:  {technique}", " ", f" COMPARISON:  {'___.' if visit.index else 'None.'}", " "]
    if visit.kind != "impression_only":
        lines += [" FINDINGS:", " ", *_wrap(visit.findings), " "]
    if visit.kind != "findings_only":
        lines += [" IMPRESSION:", " ", *_wrap(visit.impression), " "]
    return "\n".join(lines) + "\n"


def _exam(visit: Visit) -> str:
    lateral = any(not s.frontal for s in visit.shots)
    view = visit.shots[visit.chosen()].view if visit.chosen() is not None else "PA"
    if lateral:
        return f"CHEST ({view} AND LAT)"
    return "CHEST (PORTABLE AP)" if view == "AP" else "CHEST (PA)"


def _clock(seconds: float) -> float:
    whole = int(seconds)
    h, m, s = whole // 3600, whole // 60 % 60, whole % 60
    return round(h * 10000 + m * 100 + s + (seconds - whole), 3)


def write_patient(root: str, task: Task, patient, visits: list[Visit], size: int) -> dict:
    """Write one patient's images and reports; return their table rows and expected pairs."""
    rows: dict[str, list] = {"metadata": [], "split": [], "chexpert": [], "pairs": []}
    sub = task.patient_id
    folder = os.path.join(root, IMAGES, "files", f"p{sub[:2]}", f"p{sub}")
    report_folder = os.path.join(root, REPORTS, "files", f"p{sub[:2]}", f"p{sub}")
    ensure_dir(report_folder)
    first = date(2110, 1, 1) + timedelta(days=visits[0].style % (80 * 365))
    for v in visits:
        study = study_id(task, v.index)
        exam = _exam(v)
        ensure_dir(os.path.join(folder, f"s{study}"))
        day = first + timedelta(days=v.day)
        for shot in v.shots:
            path = os.path.join(folder, f"s{study}", f"{shot.uid}.jpg")
            Image.fromarray(shot.pixels).save(path, format="JPEG", quality=95)
            rows["metadata"].append({
                "dicom_id": shot.uid, "subject_id": sub, "study_id": study,
                "PerformedProcedureStepDescription": exam, "ViewPosition": shot.view, "Rows": size,
                "Columns": size, "StudyDate": int(day.strftime("%Y%m%d")),
                "StudyTime": _clock(v.clock + shot.seconds), "ProcedureCodeSequence_CodeMeaning": exam,
                "ViewCodeSequence_CodeMeaning": VIEW_MEANING[shot.view],
                "PatientOrientationCodeSequence_CodeMeaning": "Recumbent" if "AP" in exam else "Erect"})
            rows["split"].append({"dicom_id": shot.uid, "study_id": study, "subject_id": sub, "split": task.split})
        if v.labels is not None:
            rows["chexpert"].append({"subject_id": sub, "study_id": study,
                                     **{name: v.labels[name] for name in LABEL_COLUMNS}})
        with open(os.path.join(report_folder, f"s{study}.txt"), "wb") as fh:
            fh.write(report_text(v, exam).encode("utf-8"))
        if v.chosen() is not None:
            rows["pairs"].append(pair_row(LAYOUT, task, v, v.shots[v.chosen()].uid, study))
    return rows


def _write_gz(path: Path, frame: pd.DataFrame) -> None:
    data = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    path.write_bytes(gzip.compress(data, compresslevel=6, mtime=0))  # no time, no name: same bytes each run


def write_tables(root: Path, rows: dict) -> dict:
    images = root / IMAGES
    ensure_dir(str(images / "files"))
    ensure_dir(str(root / REPORTS / "files"))
    _write_gz(images / TABLES["metadata"], pd.DataFrame(rows["metadata"]))
    _write_gz(images / TABLES["split"], pd.DataFrame(rows["split"]))
    _write_gz(images / TABLES["chexpert"],
              pd.DataFrame(rows["chexpert"], columns=["subject_id", "study_id", *LABEL_COLUMNS]))
    return {"images": IMAGES, "reports": REPORTS}


LAYOUT = Layout(
    name="mimic-cxr", site="internal", code=11, splits=("train", "validate", "test"),
    fractions=(0.6, 0.1, 0.3), held_out="test", to_contract={"train": "train", "validate": "validate", "test": "test"},
    report_kinds=("impression_only", "findings_only", "no_headers"), canary_id=re.compile(r"[0-9]{8}"),
    canary_hint="an 8-digit subject_id (e.g. 19999999)", patient_ids=patient_ids,
    write_patient=write_patient, write_tables=write_tables,
)


def write_mimic_cxr(out_dir, patients: int, seed: int, size: int = 64, split_fractions=None,
                    canary_patient: str | None = None, canary_phrase: str | None = None, canary_reports: int = 3,
                    workers: int = 1, progress: bool = True) -> OfficialDataset:
    """Write a synthetic MIMIC-CXR-JPG + reports release under ``out_dir`` (``roots["images"]``,
    ``roots["reports"]``); ``split_fractions``: patient fractions for train, validate, test."""
    return build(LAYOUT, out_dir, patients, seed, size, split_fractions, canary_patient, canary_phrase,
                 canary_reports, workers, progress)
