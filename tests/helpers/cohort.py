"""A tiny throwaway cohort for tests: grayscale PNGs whose content the report describes.

Each pair draws a few visual findings (a bright nodule in one of four lung
zones, an enlarged heart shadow, a basal haze on one side) and its report
names them, so that a contrastive model can learn the image-report link in
a few dozen steps. Everything follows the cohort contract
(:mod:`relink.cohort`) and is deterministic for a seed.

Usage::

    from helpers.cohort import make_tiny_cohort
    root = make_tiny_cohort(tmp_path, n=24, size=64, seed=0)   # a cohort folder
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from relink.cohort import write_cohort
from relink.labels import CHEXPERT_LABELS

ZONES = ("right upper", "left upper", "right lower", "left lower")


def _draw(rng: np.random.Generator, size: int, zone: int | None, big_heart: bool, haze: int | None) -> tuple[np.ndarray, float]:
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.25 + 0.05 * rng.standard_normal((size, size))
    # two dark lung fields either side of a bright mediastinum
    img += 0.25 * (np.abs(xx - 0.5) < 0.08)
    heart_w = 0.24 if big_heart else 0.13
    img += 0.35 * (((xx - 0.52) / heart_w) ** 2 + ((yy - 0.68) / 0.14) ** 2 < 1)
    r = 0.0
    if zone is not None:
        cx = 0.28 if zone in (0, 2) else 0.72  # radiological convention: patient's right on the image left
        cy = 0.32 if zone in (0, 1) else 0.6
        r = 0.05 + 0.02 * int(rng.integers(0, 3))
        img += 0.55 * (((xx - cx) ** 2 + (yy - cy) ** 2) < r * r)
    if haze is not None:
        side = xx < 0.5 if haze == 0 else xx >= 0.5
        img += 0.4 * side * np.clip((yy - 0.7) / 0.3, 0, 1)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), r


def make_tiny_cohort(tmp_path: str | Path, n: int = 24, size: int = 64, seed: int = 0, name: str = "tiny") -> Path:
    """Write a cohort folder ``tmp_path/name`` with ``n`` pairs; return the folder.

    Two pairs per patient; splits by patient, about 60/10/30 train/validate/test.
    """
    rng = np.random.default_rng(seed)
    root = Path(tmp_path) / name
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        patient = i // 2
        zone = int(rng.integers(0, 5))
        zone = None if zone == 4 else zone
        big_heart = bool(rng.random() < 0.4)
        haze = int(rng.integers(0, 3))
        haze = None if haze == 2 else haze
        img, radius = _draw(rng, size, zone, big_heart, haze)
        rel = f"images/p{patient:04d}/{i:05d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / rel)
        words = []
        nodule = ("small", "medium", "large")[round((radius - 0.05) / 0.02)] if zone is not None else ""
        words.append(f"{nodule} nodular opacity in the {ZONES[zone]} zone." if zone is not None else "lungs are clear.")
        words.append("the heart is enlarged." if big_heart else "heart size is normal.")
        if haze is not None:
            words.append(f"{'right' if haze == 0 else 'left'} pleural effusion.")
        labels = dict.fromkeys(CHEXPERT_LABELS, np.nan)
        labels["Cardiomegaly"] = 1.0 if big_heart else 0.0
        labels["Lung Lesion"] = 1.0 if zone is not None else np.nan
        labels["Pleural Effusion"] = 1.0 if haze is not None else 0.0
        if zone is None and not big_heart and haze is None:
            labels["No Finding"] = 1.0
        bucket = (patient * 7919 + seed) % 10
        split = "train" if bucket < 6 else ("validate" if bucket < 7 else "test")
        rows.append({
            "pair_id": f"pair{i:05d}", "patient_id": f"pat{patient:04d}", "study_id": f"st{i:05d}",
            "image_path": rel, "report": " ".join(words), "split": split, "view": "PA",
            "cohort": "tiny-internal", **labels,
        })
    write_cohort(pd.DataFrame(rows), root)
    return root


def tree_digest(root: Path) -> str:
    """sha256 over every file's relative path and bytes (two folders written alike have one digest)."""
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()
