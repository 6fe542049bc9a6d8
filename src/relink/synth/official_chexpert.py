"""A synthetic CheXpert Plus release (layout: see :mod:`.official`).

Files and columns follow :mod:`relink.loaders.chexpert_plus` and the 2024-04-01
release (the names the test fixtures were checked against)::

    df_chexpert_plus_240401.csv   one row per image: path_to_image
        (``{train,valid}/patientN/studyM/viewK_{frontal,lateral}.jpg``: .jpg, as in the
        release), path_to_dcm, frontal_lateral (Frontal|Lateral), ap_pa (AP|PA, blank for
        laterals), deid_patient_id, patient_report_date_order, report, section_clinical_history,
        section_comparison, section_findings, section_impression (blank when the report has
        no such section), age, sex, split (train|valid)
    PNG/{train,valid}/patientN/studyM/viewK_{frontal,lateral}.png   8-bit grey PNG
    chexbert_labels/{impression,findings,report}_fixed.json   JSON Lines, one record per image:
        path_to_image (.jpg) and the 14 labels (1.0, 0.0, -1.0 or null)

Content has the ``external`` style. A section the report lacks is labelled as CheXbert labels an empty
text ("No Finding" = 1, the rest null), so the loader's fall-back from the impression file to the
findings file is exercised. Patient ids are ``patient00001`` ... in index order.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .official import Layout, OfficialDataset, Task, Visit, build, ensure_dir, pair_row

CSV_NAME = "df_chexpert_plus_240401.csv"
LABEL_FILES = ("impression", "findings", "report")
LABEL_NAMES = sorted([
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices"])
EMPTY_TEXT_LABELS = {"No Finding": 1.0}  # what CheXbert reads from an empty section
HISTORY = ("Cough.", "Shortness of breath.", "Fever.", "Line placement.", "Chest pain.", "Follow-up.")


def patient_ids(patients: int, seed: int) -> list[str]:
    return [f"patient{i + 1:05d}" for i in range(patients)]


def _record(path: str, labels: dict) -> str:
    values = {name: (None if labels.get(name) is None or np.isnan(labels[name]) else float(labels[name]))
              for name in LABEL_NAMES}
    return json.dumps({"path_to_image": path, **values})


def _narrative(visit: Visit, history: str, comparison: str) -> str:
    parts = [f"NARRATIVE:\nCHEST {'AP' if visit.study.view == 'AP' else 'PA AND LATERAL'}",
             f"CLINICAL HISTORY: {history}", f"COMPARISON: {comparison}"]
    if visit.kind != "impression_only":
        parts.append(f"FINDINGS:\n{visit.findings}")
    if visit.kind != "findings_only":
        parts.append(f"IMPRESSION:\n{visit.impression}")
    return "\n\n".join(parts)


def write_patient(root: str, task: Task, patient, visits: list[Visit], size: int) -> dict:
    """Write one patient's PNG files; return their CSV rows, label records and expected pairs."""
    rows: dict[str, list] = {"table": [], **{name: [] for name in LABEL_FILES}, "pairs": []}
    for v in visits:
        folder = f"{task.split}/{task.patient_id}/study{v.index + 1}"
        ensure_dir(os.path.join(root, "PNG", folder))
        history, comparison = HISTORY[v.style % len(HISTORY)], "Prior radiograph." if v.index else "None."
        narrative = _narrative(v, history, comparison)
        paths = []
        for j, shot in enumerate(v.shots):
            path = f"{folder}/view{j + 1}_{'frontal' if shot.frontal else 'lateral'}.jpg"
            paths.append(path)
            Image.fromarray(shot.pixels).save(os.path.join(root, "PNG", path[:-4] + ".png"), format="PNG")
            rows["table"].append({
                "path_to_image": path, "path_to_dcm": path[:-4] + ".dcm",
                "frontal_lateral": "Frontal" if shot.frontal else "Lateral",
                "ap_pa": shot.view if shot.frontal else None, "deid_patient_id": task.patient_id,
                "patient_report_date_order": v.index + 1, "report": narrative,
                "section_clinical_history": history, "section_comparison": comparison,
                "section_findings": None if v.kind == "impression_only" else v.findings,
                "section_impression": None if v.kind == "findings_only" else v.impression,
                "age": patient.age, "sex": "Female" if patient.sex == "F" else "Male", "split": task.split})
            if v.labels is not None:
                rows["impression"].append(_record(path, EMPTY_TEXT_LABELS if v.kind == "findings_only" else v.labels))
                rows["findings"].append(_record(path, EMPTY_TEXT_LABELS if v.kind == "impression_only" else v.labels))
                rows["report"].append(_record(path, v.labels))
        if v.chosen() is not None:
            rows["pairs"].append(pair_row(LAYOUT, task, v, paths[v.chosen()][:-4],
                                          f"{task.patient_id}/study{v.index + 1}"))
    return rows


def write_tables(root: Path, rows: dict) -> dict:
    ensure_dir(str(root / "PNG"))
    pd.DataFrame(rows["table"]).to_csv(root / CSV_NAME, index=False, lineterminator="\n")
    ensure_dir(str(root / "chexbert_labels"))
    for name in LABEL_FILES:
        text = "".join(line + "\n" for line in rows[name])
        (root / "chexbert_labels" / f"{name}_fixed.json").write_text(text, encoding="utf-8")
    return {"root": "."}


LAYOUT = Layout(
    name="chexpert-plus", site="external", code=12, splits=("train", "valid"), fractions=(0.9, 0.1),
    held_out="valid", to_contract={"train": "train", "valid": "validate"},
    report_kinds=("impression_only", "findings_only"), canary_id=re.compile(r"patient[0-9]{5,}"),
    canary_hint="'patient' and at least 5 digits (e.g. patient99999)", patient_ids=patient_ids,
    write_patient=write_patient, write_tables=write_tables,
)


def write_chexpert_plus(out_dir, patients: int, seed: int, size: int = 64, split_fractions=None,
                        canary_patient: str | None = None, canary_phrase: str | None = None,
                        canary_reports: int = 3, workers: int = 1, progress: bool = True) -> OfficialDataset:
    """Write a synthetic CheXpert Plus release with ``out_dir`` as its root (``roots["root"]``);
    ``split_fractions``: patient fractions for train, valid."""
    return build(LAYOUT, out_dir, patients, seed, size, split_fractions, canary_patient, canary_phrase,
                 canary_reports, workers, progress)
