"""Tiny trees in the official MIMIC-CXR-JPG/MIMIC-CXR and CheXpert Plus layouts.

Every builder writes real (tiny) JPEG/PNG files with Pillow, the official
table names and columns, and returns the paths plus the facts a test checks.
Tests then break one thing (delete an image, corrupt a label) to exercise
each bad-input rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

LABELS_ALPHABETICAL = sorted([
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity",
    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
])


def write_image(path: Path, fmt: str, seed: int = 0, size: int = 8) -> Path:
    """A real grey-scale image of ``size`` px, format ``"JPEG"`` or ``"PNG"``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path, format=fmt)
    return path


def mimic_report(*, findings: str | None = None, impression: str | None = None,
                 extra: str | None = None) -> str:
    """A report in the MIMIC-CXR text layout: title line, then ' HEADER:' blocks, blank lines ' '."""
    lines = ["                                 FINAL REPORT",
             " EXAMINATION:  CHEST (PA AND LAT)", " ",
             " INDICATION:  ___ with cough.", " ",
             " COMPARISON:  None.", " "]
    if findings is not None:
        lines += [" FINDINGS:", " ", f" {findings}", " "]
    if impression is not None:
        lines += [" IMPRESSION:", " ", f" {impression}", " "]
    if extra is not None:
        lines += [extra]
    return "\n".join(lines) + "\n"


# A report with no findings/impression header: free text after a title paragraph.
NO_HEADER_REPORT = (
    "                                 FINAL REPORT\n"
    " CHEST RADIOGRAPH PERFORMED ON ___\n"
    " \n"
    " Heart size is normal. No pneumothorax.\n"
)


@dataclass
class MimicStudy:
    subject: str
    study: str
    split: str
    report: str | bytes | None
    images: list[tuple[str, str | None, int, float]]  # dicom_id, ViewPosition, StudyDate, StudyTime
    labels: dict[str, float] | None = field(default_factory=dict)  # None: no row in chexpert table


def default_mimic_studies() -> list[MimicStudy]:
    return [
        MimicStudy("10000001", "50000001", "train",
                   mimic_report(findings="Lungs are clear.", impression="No acute process."),
                   [("aa000001-pa", "PA", 21800101, 100000.0), ("aa000002-lat", "LATERAL", 21800101, 100100.0)],
                   {"Cardiomegaly": 1.0, "Edema": -1.0, "Pneumothorax": 0.0}),
        # Two frontal images: PA is preferred over an earlier AP.
        MimicStudy("10000001", "50000002", "train",
                   mimic_report(impression="Small left effusion."),
                   [("bb000001-ap", "AP", 21800102, 90000.0), ("bb000002-pa", "PA", 21800102, 120000.0)],
                   {"Pleural Effusion": 1.0}),
        # Two AP images: the earlier one is kept.
        MimicStudy("10000002", "50000003", "validate", NO_HEADER_REPORT,
                   [("cc000009-late", "AP", 21800105, 130000.0), ("cc000001-early", "AP", 21800105, 80000.0)],
                   {"No Finding": 1.0}),
        # Lateral only: no frontal image, the study is dropped.
        MimicStudy("10000002", "50000004", "test", mimic_report(findings="Stable."),
                   [("dd000001-ll", "LL", 21800106, 100000.0)], {}),
        # Findings only, and absent from the label table.
        MimicStudy("11000003", "50000005", "test", mimic_report(findings="Cardiomegaly is new."),
                   [("ee000001-pa", "PA", 21800107, 100000.0)], None),
    ]


def mimic_report_path(reports: Path, subject: str, study: str) -> Path:
    return reports / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"


def mimic_image_path(images: Path, subject: str, study: str, dicom: str) -> Path:
    return images / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"


def build_mimic(tmp_path: Path, studies: list[MimicStudy] | None = None) -> tuple[Path, Path]:
    """Write MIMIC-CXR-JPG (images + 3 tables, gzipped) and MIMIC-CXR reports; return (images, reports)."""
    studies = default_mimic_studies() if studies is None else studies
    images, reports = tmp_path / "mimic-cxr-jpg", tmp_path / "mimic-cxr-reports"
    meta, split, chex = [], [], []
    for k, s in enumerate(studies):
        for j, (dicom, view, date, time) in enumerate(s.images):
            write_image(mimic_image_path(images, s.subject, s.study, dicom), "JPEG", seed=10 * k + j)
            meta.append({"dicom_id": dicom, "subject_id": s.subject, "study_id": s.study,
                         "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": view,
                         "Rows": 8, "Columns": 8, "StudyDate": date, "StudyTime": time,
                         "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
                         "ViewCodeSequence_CodeMeaning": "postero-anterior",
                         "PatientOrientationCodeSequence_CodeMeaning": "Erect"})
            split.append({"dicom_id": dicom, "study_id": s.study, "subject_id": s.subject, "split": s.split})
        if s.labels is not None:
            chex.append({"subject_id": s.subject, "study_id": s.study,
                         **{name: s.labels.get(name, np.nan) for name in LABELS_ALPHABETICAL}})
        if s.report is not None:
            path = mimic_report_path(reports, s.subject, s.study)
            path.parent.mkdir(parents=True, exist_ok=True)
            data = s.report if isinstance(s.report, bytes) else s.report.encode("utf-8")
            path.write_bytes(data)
    images.mkdir(parents=True, exist_ok=True)
    (reports / "files" / "p10").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(meta).to_csv(images / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    pd.DataFrame(split).to_csv(images / "mimic-cxr-2.0.0-split.csv.gz", index=False)
    pd.DataFrame(chex, columns=["subject_id", "study_id", *LABELS_ALPHABETICAL]).to_csv(
        images / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False)
    return images, reports


def edit_table(path: Path, fn) -> None:
    """Rewrite an official CSV(.gz) through ``fn(frame) -> frame`` (ids kept as strings)."""
    frame = fn(pd.read_csv(path, dtype=str))
    frame.to_csv(path, index=False)


# ---------------------------------------------------------------- CheXpert Plus

@dataclass
class PlusImage:
    path: str  # as written in the CSV (".jpg")
    frontal_lateral: str
    ap_pa: str | None
    patient: str
    findings: str | None
    impression: str | None
    split: str = "train"
    on_disk: str = ".png"  # suffix of the file actually written, or None for no file


def default_plus_images() -> list[PlusImage]:
    return [
        PlusImage("train/patient00001/study1/view1_frontal.jpg", "Frontal", "PA", "patient00001",
                  "Heart size normal.", "No acute disease."),
        PlusImage("train/patient00001/study1/view2_lateral.jpg", "Lateral", None, "patient00001",
                  "Heart size normal.", "No acute disease."),
        # Two frontal images: PA (view2) preferred over AP (view1).
        PlusImage("train/patient00001/study2/view1_frontal.jpg", "Frontal", "AP", "patient00001",
                  None, "Left effusion."),
        PlusImage("train/patient00001/study2/view2_frontal.jpg", "Frontal", "PA", "patient00001",
                  None, "Left effusion."),
        # Findings only: labels fall back to findings_fixed.json.
        PlusImage("train/patient00002/study1/view1_frontal.jpg", "Frontal", "AP", "patient00002",
                  "Tube in place.", None),
        # Only a .jpg on disk (a local conversion).
        PlusImage("train/patient00003/study1/view1_frontal.jpg", "Frontal", "AP", "patient00003",
                  "Clear lungs.", "Normal.", on_disk=".jpg"),
        PlusImage("valid/patient64541/study1/view1_frontal.jpg", "Frontal", "AP", "patient64541",
                  "Low volumes.", "Atelectasis.", split="valid"),
    ]


def default_plus_labels() -> dict[str, dict[str, dict[str, float | None]]]:
    """Per label file, per CSV path: the non-null labels (others null)."""
    return {
        "impression": {
            "train/patient00001/study1/view1_frontal.jpg": {"No Finding": 1.0},
            "train/patient00001/study2/view2_frontal.jpg": {"Pleural Effusion": 1.0, "Edema": -1.0},
            "train/patient00002/study1/view1_frontal.jpg": {"No Finding": 1.0},  # empty impression artefact
            "valid/patient64541/study1/view1_frontal.jpg": {"Atelectasis": -1.0, "Pneumothorax": 0.0},
        },
        "findings": {
            "train/patient00002/study1/view1_frontal.jpg": {"Support Devices": 1.0},
        },
        "report": {
            "train/patient00001/study1/view1_frontal.jpg": {"Cardiomegaly": 0.0},
        },
    }


PLUS_CSV_EXTRA = ("path_to_dcm", "patient_report_date_order", "report", "section_clinical_history",
                  "section_comparison", "age", "sex")


def build_plus(tmp_path: Path, images: list[PlusImage] | None = None, labels=None,
               png_dir: tuple[str, ...] = ("PNG",)) -> Path:
    """Write a CheXpert Plus release folder (CSV, PNG tree, chexbert_labels); return its root."""
    images = default_plus_images() if images is None else images
    labels = default_plus_labels() if labels is None else labels
    root = tmp_path / "chexpert-plus"
    base = root.joinpath(*png_dir)
    rows = []
    for k, im in enumerate(images):
        if im.on_disk:
            write_image(base / (im.path[:-4] + im.on_disk), "PNG" if im.on_disk == ".png" else "JPEG", seed=k)
        rows.append({"path_to_image": im.path, "path_to_dcm": im.path[:-4] + ".dcm",
                     "frontal_lateral": im.frontal_lateral, "ap_pa": im.ap_pa,
                     "deid_patient_id": im.patient, "patient_report_date_order": 1,
                     "report": "NARRATIVE: ...", "section_clinical_history": "Cough.",
                     "section_comparison": "None.", "section_findings": im.findings,
                     "section_impression": im.impression, "age": 60, "sex": "Female", "split": im.split})
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "df_chexpert_plus_240401.csv", index=False)
    label_dir = root / "chexbert_labels"
    label_dir.mkdir(exist_ok=True)
    names = list(dict.fromkeys(LABELS_ALPHABETICAL))
    for source, by_path in labels.items():
        with open(label_dir / f"{source}_fixed.json", "w", encoding="utf-8") as fh:
            for im in images:
                given = by_path.get(im.path, {})
                fh.write(json.dumps({"path_to_image": im.path, **{n: given.get(n) for n in names}}) + "\n")
    return root
