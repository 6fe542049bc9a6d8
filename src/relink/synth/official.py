"""Synthetic datasets in the official on-disk layouts of MIMIC-CXR and CheXpert Plus: the shared core.

The writers (:mod:`.official_mimic`, :mod:`.official_chexpert`) write folders the real loaders read
unchanged, so the credentialed profiles run end to end without credentials. Under ``DIR``::

    --layout mimic-cxr
    DIR/synth.json                          how it was made + ground truth counts
    DIR/mimic-cxr-jpg/                      the MIMIC-CXR-JPG root (--images, RELINK_MIMIC_IMAGES)
        files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg
        mimic-cxr-2.0.0-{metadata,split,chexpert}.csv.gz
    DIR/mimic-cxr-reports/                  the MIMIC-CXR reports folder (--reports, RELINK_MIMIC_REPORTS)
        files/pXX/pSUBJECT/sSTUDY.txt

    --layout chexpert-plus                  DIR is the release root (--root, RELINK_CHEXPERT_PLUS_ROOT)
    DIR/synth.json
    DIR/df_chexpert_plus_240401.csv         paths end in .jpg, as in the release
    DIR/PNG/{train,valid}/patientN/studyM/viewK_{frontal,lateral}.png
    DIR/chexbert_labels/{impression,findings,report}_fixed.json

Content is drawn as in :mod:`.generate`, one stream per patient; the quirks the loaders handle
(lateral-only or two-frontal studies, impression- or findings-only reports, reports without headers,
unlabelled studies) come from a second stream, so they never change the content. Splits are
patient-disjoint; canary patients (a given id, or a phrase appended to their first report) always have
a frontal image, a full report and labels, and sit in the held-out split. The bytes depend only on the
options, not on ``workers``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import RelinkError
from ..io import atomic_dir, claim_output, mark_output, write_json
from ..labels import CHEXPERT_LABELS
from ..options import number
from .generate import MARKER, MAX_SIZE, MIN_SIZE, cut_splits, mp_context
from .official_studies import Task, Visit, patient_visits

MAX_PATIENTS = 1_000_000
PAIR_COLUMNS = ["pair_id", "patient_id", "study_id", "split", "view", "report", *CHEXPERT_LABELS,
                "report_kind", "n_frontal", "canary"]
PHRASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .,'-]*")  # no colon: it could read as a section header


@dataclass(frozen=True)
class Layout:
    """What the core needs to know about one official layout."""

    name: str
    site: str  # content style of relink.synth (internal: MIMIC-like, external: CheXpert-like)
    code: int  # seed-stream code
    splits: tuple[str, ...]  # official split names
    fractions: tuple[float, ...]  # default patient fractions per split
    held_out: str  # where canary patients go
    to_contract: dict  # official split name -> cohort contract name
    report_kinds: tuple[str, ...]  # quirk kinds of report besides "full"
    canary_id: re.Pattern
    canary_hint: str
    patient_ids: Callable[[int, int], list[str]]  # (patients, seed) -> distinct ids
    write_patient: Callable[..., dict]  # (root, task, patient, visits, size) -> rows by table
    write_tables: Callable[[Path, dict], dict]  # (root, rows by table) -> {role: relative root}


@dataclass(frozen=True)
class OfficialDataset:
    """What a writer wrote, and the ground truth a test checks the loaders against.

    Pairs assume the loaders' default views (one per study with a frontal image); ``expected`` is one
    row per pair in the cohort contract's terms plus ``report_kind`` and ``n_frontal``.
    """

    layout: str
    out: Path
    roots: dict[str, Path]
    seed: int
    patients: int
    studies: int
    images: int
    frontal_studies: int
    patients_per_split: dict[str, int]
    pairs_per_split: dict[str, int]
    quirks: dict[str, int]
    canary_patient: str | None
    canary_phrase: str | None
    canary_pair_ids: tuple[str, ...]
    expected: pd.DataFrame = field(repr=False)


def _check(layout: Layout, patients, seed, size, fractions, canary_patient, canary_phrase, canary_reports,
           workers) -> tuple[tuple[float, ...], str | None]:
    number("--patients", patients, int, 1, MAX_PATIENTS)
    number("--seed", seed, int, 0)
    number("--size", size, int, MIN_SIZE, MAX_SIZE)
    number("--workers", workers, int, 1)
    fractions = layout.fractions if fractions is None else tuple(fractions)
    names = ",".join(layout.splits)
    if len(fractions) != len(layout.splits):
        raise RelinkError(f"--splits needs {len(layout.splits)} fractions {names} for --layout {layout.name}")
    fractions = tuple(number("--splits", f, float, 0.0, 1.0) for f in fractions)
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise RelinkError(f"--splits fractions {names} must sum to 1 (sum {sum(fractions):g})")
    if canary_patient is not None and not layout.canary_id.fullmatch(str(canary_patient)):
        raise RelinkError(f"--canary-patient must be {layout.canary_hint} for --layout {layout.name}")
    if canary_phrase is not None:
        canary_phrase = " ".join(str(canary_phrase).split())
        if not PHRASE.fullmatch(canary_phrase) or len(canary_phrase) > 200:
            raise RelinkError("--canary-phrase must be one line of letters, digits, spaces and . , ' - "
                              "(at most 200 characters)")
        need = number("--canary-reports", canary_reports, int, 1) + (canary_patient is not None)
        if need > patients:
            raise RelinkError(f"--patients {patients} is too few for {need} canary patients")
    return fractions, canary_phrase


def _work(job) -> list[tuple[Task, list[Visit], dict]]:
    root, layout, size, tasks = job
    out = []
    for task in tasks:
        patient, visits = patient_visits(task, layout.site, size, layout.report_kinds)
        rows = layout.write_patient(root, task, patient, visits, size)
        for v in visits:  # the images are on disk; keep only what the summary needs
            for s in v.shots:
                s.pixels = None
            v.study = None
        out.append((task, visits, rows))
    return out


def build(layout: Layout, out_dir, patients: int, seed: int, size: int = 64, split_fractions=None,
          canary_patient: str | None = None, canary_phrase: str | None = None, canary_reports: int = 3,
          workers: int = 1, progress: bool = True) -> OfficialDataset:
    """Write one official-layout dataset at ``out_dir`` atomically; return what was written."""
    fractions, canary_phrase = _check(layout, patients, seed, size, split_fractions, canary_patient,
                                      canary_phrase, canary_reports, workers)
    out = claim_output(out_dir, "dir", owner="synth", overwrite=None)  # refuses a folder that is not a synth output
    content = np.random.SeedSequence([int(seed), layout.code]).spawn(patients)
    quirks = np.random.SeedSequence([int(seed), layout.code, 1]).spawn(patients)
    split = cut_splits(patients, layout.splits, fractions,
                       np.random.default_rng(np.random.SeedSequence([int(seed), layout.code, 7])))
    ids = layout.patient_ids(patients, int(seed))
    n_phrase = canary_reports if canary_phrase else 0
    picks = np.random.default_rng(np.random.SeedSequence([int(seed), layout.code, 9])).choice(
        patients, size=n_phrase + (canary_patient is not None), replace=False)
    phrase_at = set(int(i) for i in picks[:n_phrase])
    canary_at = int(picks[-1]) if canary_patient is not None else -1
    if canary_patient is not None:
        if canary_patient in ids:  # the canary's id was someone's: they take the one it replaces
            ids[ids.index(canary_patient)] = ids[canary_at]
        ids[canary_at] = str(canary_patient)
    for i in phrase_at | ({canary_at} if canary_patient is not None else set()):
        split[i] = layout.held_out
    tasks = [Task(i, ids[i], str(split[i]), int(seed), content[i], quirks[i], i == canary_at,
                  canary_phrase if i in phrase_at else None) for i in range(patients)]
    chunk = max(1, min(64, patients // (8 * workers) or 1))
    from tqdm.auto import tqdm

    with atomic_dir(out) as tmp:
        jobs = [(str(tmp), layout, int(size), tasks[a:a + chunk]) for a in range(0, patients, chunk)]
        done: list = []
        with tqdm(total=patients, unit="patient", desc=f"synth {layout.name}",
                  disable=None if progress else True) as bar:
            if workers == 1:
                for part in map(_work, jobs):
                    done.extend(part)
                    bar.update(len(part))
            else:
                with mp_context().Pool(min(workers, len(jobs))) as pool:
                    for part in pool.imap(_work, jobs):
                        done.extend(part)
                        bar.update(len(part))
        rows: dict[str, list] = {}
        for _, _, r in done:
            for table, items in r.items():
                rows.setdefault(table, []).extend(items)
        roots = layout.write_tables(tmp, rows)
        mark_output(tmp, "synth", layout=layout.name)
        truth = _summary(layout, out, roots, int(seed), done, rows["pairs"], canary_patient, canary_phrase)
        write_json(tmp / MARKER, {
            "generator": "relink.synth.official", "format_version": 1, "relink_version": __version__,
            "layout": layout.name, "seed": int(seed), "patients": int(patients), "size": int(size),
            "split_fractions": dict(zip(layout.splits, fractions)), "roots": roots, "canary_reports": n_phrase,
            **{k: getattr(truth, k) for k in ("studies", "images", "frontal_studies", "patients_per_split",
                                                "pairs_per_split", "quirks", "canary_patient", "canary_phrase")},
        })
    return truth


def _summary(layout: Layout, out: Path, roots: dict, seed: int, done, pairs: list[dict],
             canary_patient, canary_phrase) -> OfficialDataset:
    visits = [(task, v) for task, vs, _ in done for v in vs]
    frontal = [(t, v) for t, v in visits if v.chosen() is not None]
    views = [{s.view for s in v.shots if s.frontal} for _, v in visits]
    quirks = {
        "lateral_only_studies": sum(not any(s.frontal for s in v.shots) for _, v in visits),
        "two_frontal_studies": sum(sum(s.frontal for s in v.shots) == 2 for _, v in visits),
        "ap_and_pa_studies": sum(len(x) == 2 for x in views),
        "studies_with_lateral": sum(any(not s.frontal for s in v.shots) for _, v in visits),
        **{f"{kind}_reports": sum(v.kind == kind for _, v in visits) for kind in ("full", *layout.report_kinds)},
        "unlabelled_studies": sum(v.labels is None for _, v in visits),
        "uncertain_label_studies": sum(v.labels is not None and -1.0 in v.labels.values() for _, v in visits),
    }
    expected = pd.DataFrame(pairs, columns=PAIR_COLUMNS)
    expected[list(CHEXPERT_LABELS)] = expected[list(CHEXPERT_LABELS)].astype("float64")
    count = lambda items: {name: sum(1 for t in items if t.split == name) for name in layout.splits}  # noqa: E731
    return OfficialDataset(
        layout=layout.name, out=out, roots={k: out / v for k, v in roots.items()}, seed=seed,
        patients=len(done), studies=len(visits), images=sum(len(v.shots) for _, v in visits),
        frontal_studies=len(frontal), patients_per_split=count([t for t, _, _ in done]),
        pairs_per_split=count([t for t, _ in frontal]), quirks=quirks,
        canary_patient=None if canary_patient is None else str(canary_patient), canary_phrase=canary_phrase,
        canary_pair_ids=tuple(expected.loc[expected["canary"].astype(bool), "pair_id"]),
        expected=expected.drop(columns="canary"),
    )


def pair_row(layout: Layout, task: Task, visit: Visit, pair_id: str, study_id: str) -> dict[str, Any]:
    """The cohort row a loader should make of ``visit`` (labels NaN when it has no label record)."""
    labels = visit.labels or {}
    return {"pair_id": pair_id, "patient_id": task.patient_id, "study_id": study_id,
            "split": layout.to_contract[task.split], "view": visit.shots[visit.chosen()].view,
            "report": visit.text, **{name: labels.get(name, np.nan) for name in CHEXPERT_LABELS},
            "report_kind": visit.kind, "n_frontal": sum(s.frontal for s in visit.shots),
            "canary": visit.canary}


def ensure_dir(path: str) -> None:
    os.makedirs(path, exist_ok=True)
