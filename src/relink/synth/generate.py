"""Write a synthetic paired cohort: PNG images plus a manifest, atomically.

Layout of the folder (a cohort folder, see :mod:`relink.cohort`)::

    DIR/cohort.parquet                       the manifest, image root "."
    DIR/synth.json                           how it was made (marks a synth output)
    DIR/images/NNNN/<patient_id>-sK.png      one frontal image per study (1000 patients a folder)

Manifest columns: the cohort contract's plus ``findings``, ``impression`` (the sections of ``report``)
and ``study_index`` (0-based order of the study within its patient).

Determinism: patient ``i`` draws from child ``i`` of ``SeedSequence([seed, site_code])`` only, so the
output is byte-identical for a seed whatever the workers, and the first ``n`` patients of a bigger
cohort equal a cohort of ``n``. Splits come from a separate stream, per patient.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .. import __version__
from ..cohort import MANIFEST_NAME, REQUIRED_COLUMNS, SPLITS, validate, write_cohort
from ..errors import RelinkError
from ..io import atomic_dir, write_json
from ..labels import CHEXPERT_LABELS
from .anatomy import STUDY_COUNT_P, sample_patient, sample_study
from .render import render
from .report import write_report

#: site -> (cohort name, id prefix, seed-stream code)
SITES = {"internal": ("synthetic-internal", "int", 1), "external": ("synthetic-external", "ext", 2)}
DEFAULT_SPLITS = {"internal": (0.6, 0.1, 0.3), "external": (0.0, 0.0, 1.0)}
MARKER = "synth.json"
MIN_SIZE, MAX_SIZE = 32, 1024
EXTRA_COLUMNS = ("findings", "impression", "study_index")
COLUMNS = list(REQUIRED_COLUMNS) + list(EXTRA_COLUMNS) + ["_patient"]


def check_options(patients: int, seed: int, size: int, site: str,
                  split_fractions, workers: int) -> tuple[float, float, float]:
    """Validate generator options; return the split fractions to use."""
    if site not in SITES:
        raise RelinkError(f"--site must be one of {', '.join(SITES)} (got {site!r})")
    if not isinstance(patients, (int, np.integer)) or patients < 1:
        raise RelinkError(f"--patients must be at least 1 (got {patients})")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise RelinkError(f"--seed must be a non-negative integer (got {seed})")
    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise RelinkError(f"--size must be between {MIN_SIZE} and {MAX_SIZE} pixels (got {size})")
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise RelinkError(f"--workers must be at least 1 (got {workers})")
    fr = DEFAULT_SPLITS[site] if split_fractions is None else tuple(split_fractions)
    if len(fr) != 3:
        raise RelinkError(f"--splits needs three fractions train,validate,test (got {len(fr)})")
    if any(not math.isfinite(float(f)) or float(f) < 0 for f in fr):
        raise RelinkError(f"--splits fractions must be non-negative (got {','.join(map(str, fr))})")
    if abs(sum(float(f) for f in fr) - 1.0) > 1e-6:
        raise RelinkError(f"--splits fractions must sum to 1 (got {','.join(map(str, fr))}, sum {sum(fr):g})")
    return tuple(float(f) for f in fr)


def parse_splits(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise RelinkError(f"--splits must be three comma-separated numbers like 0.6,0.1,0.3 (got {text!r})") from None


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RelinkError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise RelinkError(f"--out {out} is a non-empty folder that is not a synthetic cohort "
                          f"(no {MARKER}); choose a new folder")


def cut_splits(patients: int, names, fractions, rng: np.random.Generator) -> np.ndarray:
    """Split name per patient index: a seeded permutation cut by ``fractions`` (one per name)."""
    order = rng.permutation(patients)
    bounds = np.round(np.cumsum(fractions) * patients).astype(int)
    bounds[-1] = patients
    split = np.empty(patients, dtype=object)
    start = 0
    for name, stop in zip(names, bounds):
        split[order[start:stop]] = name
        start = stop
    return split


def assign_splits(patients: int, seed: int, site: str, fractions) -> np.ndarray:
    """Split name per patient index for one site (its own seeded stream)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, SITES[site][2], 7]))
    return cut_splits(patients, SPLITS, fractions, rng)


def _make_patients(job) -> pd.DataFrame:
    """Render and write every study of a batch of patients; return their rows as one small frame (a frame per
    batch, not a dict per row: the rows of a study-sized cohort as dicts would hold gigabytes)."""
    root, site, size, width, batch, study_count_p = job
    cohort, prefix, _ = SITES[site]
    rows = []
    for index, seq in batch:
        rng = np.random.default_rng(seq)
        pid = f"{prefix}-p{index:0{width}d}"
        patient = sample_patient(rng, index, pid, study_count_p)
        folder = Path("images") / f"{index // 1000:04d}"
        if index % 1000 == 0 or index == batch[0][0]:  # one mkdir per folder, not per patient
            os.makedirs(Path(root) / folder, exist_ok=True)
        prev = None
        for k in range(patient.n_studies):
            study = sample_study(rng, patient, k, prev, site)
            pixels = render(patient, study, size, rng)
            report = write_report(patient, study, site, rng)
            rel = (folder / f"{pid}-s{k}.png").as_posix()
            Image.fromarray(pixels).save(Path(root) / rel, format="PNG")
            sid = f"{pid}-s{k}"
            rows.append({"pair_id": f"{sid}-0", "patient_id": pid, "study_id": sid, "image_path": rel,
                         "report": report.text, "split": None, "view": study.view, "cohort": cohort,
                         **report.labels, "findings": report.findings, "impression": report.impression,
                         "study_index": k, "_patient": index})
            prev = study
    return pd.DataFrame(rows, columns=COLUMNS)


def mp_context():
    # fork is fast and needs no importable __main__ (notebooks); it is unsafe or absent off Linux
    if sys.platform.startswith("linux"):
        return mp.get_context("fork")
    return mp.get_context("spawn")


def generate_cohort(out_dir, patients: int, seed: int, size: int = 64, site: str = "internal",
                    split_fractions=None, workers: int = 1, progress: bool = True, study_count_p=None) -> Path:
    """Generate a synthetic cohort folder at ``out_dir`` (new, empty or an earlier synth output);
    return its manifest path.

    ``study_count_p`` (probabilities of 1, 2, ... studies) replaces :data:`.anatomy.STUDY_COUNT_P`;
    every other draw stays the same.
    """
    fractions = check_options(patients, seed, size, site, split_fractions, workers)
    counts = STUDY_COUNT_P if study_count_p is None else _study_counts(study_count_p)
    out = Path(out_dir)
    _check_out(out)
    children = np.random.SeedSequence([int(seed), SITES[site][2]]).spawn(int(patients))
    width = max(6, len(str(patients - 1)))
    chunk = max(1, min(64, patients // (8 * workers) or 1))
    from tqdm.auto import tqdm

    with atomic_dir(out) as tmp:
        jobs = [(str(tmp), site, int(size), width, list(zip(range(a, min(a + chunk, patients)), children[a:a + chunk])),
                 counts) for a in range(0, patients, chunk)]
        parts: list[pd.DataFrame] = []
        bar = tqdm(total=patients, unit="patient", desc=f"synth {site}", disable=None if progress else True)
        try:
            if workers == 1:
                for job in jobs:
                    parts.append(_make_patients(job))
                    bar.update(len(job[4]))
            else:
                with mp_context().Pool(min(workers, len(jobs))) as pool:
                    for job, part in zip(jobs, pool.imap(_make_patients, jobs)):
                        parts.append(part)
                        bar.update(len(job[4]))
        finally:
            bar.close()
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
        del parts
        split = assign_splits(patients, seed, site, fractions)
        frame["split"] = split[frame.pop("_patient").to_numpy()]
        frame[list(CHEXPERT_LABELS)] = frame[list(CHEXPERT_LABELS)].astype("float64")
        problems = validate(frame, check_images=False, max_problems=1)
        if problems:  # a generator bug, never the user's input
            raise RuntimeError(f"synthetic cohort breaks the cohort contract: {problems[0]}")
        write_cohort(frame, tmp, image_root=".", owner="synth")
        write_json(tmp / MARKER, {
            "generator": "relink.synth", "format_version": 1, "relink_version": __version__,
            "site": site, "cohort": SITES[site][0], "seed": int(seed), "patients": int(patients),
            "size": int(size), "split_fractions": list(fractions), "pairs": int(len(frame)),
            **({} if study_count_p is None else {"study_count_p": list(counts)}),
        })
    return out / MANIFEST_NAME


def _study_counts(values) -> tuple[float, ...]:
    counts = tuple(float(v) for v in values)
    if not counts or any(not math.isfinite(v) or v < 0 for v in counts) or sum(counts) <= 0:
        raise RelinkError(f"study counts must be non-negative probabilities of 1, 2, ... studies with a positive sum "
                          f"(got {','.join(map(str, values))})")
    return counts


def read_marker(path) -> dict:
    """The ``synth.json`` of a synth output folder."""
    return json.loads((Path(path) / MARKER).read_text())
