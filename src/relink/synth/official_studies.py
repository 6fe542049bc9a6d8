"""One patient's studies as the official-layout writers write them: content plus quirks.

Content is drawn exactly as :mod:`.generate` draws it; the quirks (the ``P_*`` rates) come from a
second stream, so they never change the content. A canary patient's first study always has a frontal
image, a full report and labels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .anatomy import Patient, Study, sample_patient, sample_study
from .render import acquire, density
from .report import write_report

FRONTAL = ("PA", "AP")  # in the loaders' default order of preference
P_LATERAL_ONLY = 0.05
P_TWO_FRONTAL = 0.08
P_SAME_VIEW_REPEAT = 0.5  # of two-frontal studies; the rest add the other frontal view
P_LATERAL = {"PA": 0.85, "AP": 0.10}  # a lateral beside the frontal film
P_REPORT = {"impression_only": 0.10, "findings_only": 0.05, "no_headers": 0.04}
P_MISSING_LABELS = 0.04


@dataclass(frozen=True)
class Task:
    """One patient to write: its id, split, seed streams and canary role."""

    index: int
    patient_id: str
    split: str
    seed: int
    content: np.random.SeedSequence
    quirks: np.random.SeedSequence
    canary_id: bool = False
    phrase: str | None = None


@dataclass
class Shot:
    """One image of a study. ``seconds``: taken this long after the study's first image."""

    view: str  # PA, AP, LATERAL or LL
    pixels: np.ndarray
    seconds: int
    uid: str  # 5 groups of 8 hex digits, like a MIMIC-CXR dicom_id

    @property
    def frontal(self) -> bool:
        return self.view in FRONTAL


@dataclass
class Visit:
    """One study as written: content, images, report quirk, labels (None: no label record)."""

    index: int
    study: Study
    findings: str
    impression: str
    labels: dict | None
    kind: str  # full, impression_only, findings_only, no_headers
    shots: list[Shot]
    day: int  # days after the patient's first study
    clock: float  # seconds after midnight of the first image
    style: int  # drives cosmetic choices of a layout (indication wording, dates)
    canary: bool = False

    @property
    def text(self) -> str:
        """The retrieval text a loader should return (findings then impression, whitespace collapsed)."""
        parts = {"impression_only": [self.impression], "findings_only": [self.findings]}.get(
            self.kind, [self.findings, self.impression])
        return " ".join(" ".join(parts).split())

    def chosen(self) -> int | None:
        """Index of the image a study contributes: PA before AP, then the earlier image; None if no frontal."""
        frontal = [(FRONTAL.index(s.view), j) for j, s in enumerate(self.shots) if s.frontal]
        return min(frontal)[1] if frontal else None


def _lateral(pixels: np.ndarray) -> np.ndarray:
    """A stand-in lateral film: the frontal one mirrored and smeared along rows (never audited)."""
    mixed = 0.55 * pixels[:, ::-1].astype(np.float32) + 0.45 * pixels.mean(axis=1, keepdims=True, dtype=np.float32)
    return np.rint(mixed).astype(np.uint8)


def _uid(q: np.random.Generator) -> str:
    return "-".join(f"{int(v):08x}" for v in q.integers(0, 2**32, 5))


def _shots(q, patient: Patient, study: Study, dens, pixels, size: int, keep_frontal: bool) -> list[Shot]:
    u = q.random()
    lateral_view = "LL" if q.random() < 0.2 else "LATERAL"
    if u < P_LATERAL_ONLY and not keep_frontal:
        return [Shot(lateral_view, _lateral(pixels), 0, _uid(q))]
    shots = [Shot(study.view, pixels, 0, _uid(q))]
    if P_LATERAL_ONLY <= u < P_LATERAL_ONLY + P_TWO_FRONTAL:
        if q.random() < P_SAME_VIEW_REPEAT:  # a repeat film: same geometry, new noise
            view, extra = study.view, acquire(dens, study, q)
        else:
            view = "AP" if study.view == "PA" else "PA"
            other = replace(study, view=view)
            extra = acquire(density(patient, other, size).astype(np.float32, copy=False), other, q)
        shots.append(Shot(view, extra, int(q.integers(60, 600)), _uid(q)))
    if q.random() < P_LATERAL[study.view]:
        shots.append(Shot(lateral_view, _lateral(pixels), int(q.integers(20, 120)), _uid(q)))
    return shots


def patient_visits(task: Task, site: str, size: int, kinds) -> tuple[Patient, list[Visit]]:
    """Every study of one patient: content from ``task.content``, quirks from ``task.quirks``."""
    rng, q = np.random.default_rng(task.content), np.random.default_rng(task.quirks)
    patient = sample_patient(rng, task.index, task.patient_id)
    visits, prev, day = [], None, 0
    for k in range(patient.n_studies):
        study = sample_study(rng, patient, k, prev, site)
        dens = density(patient, study, size).astype(np.float32, copy=False)
        pixels = acquire(dens, study, rng)  # = render(patient, study, size, rng)
        report = write_report(patient, study, site, rng)
        canary = k == 0 and (task.canary_id or task.phrase is not None)
        shots = _shots(q, patient, study, dens, pixels, size, keep_frontal=canary)
        u, cut, kind = q.random(), 0.0, "full"
        for name in kinds:
            cut += P_REPORT[name]
            if u < cut:
                kind = name
                break
        kind = "full" if canary else kind
        missing = q.random() < P_MISSING_LABELS and not canary
        day += int(q.integers(1, 400)) if k else 0
        clock = round(float(q.integers(6 * 3600, 21 * 3600)) + float(q.random()), 3)
        findings = report.findings + (f" {task.phrase}" if canary and task.phrase else "")
        visits.append(Visit(k, study, findings, report.impression, None if missing else dict(report.labels),
                            kind, shots, day, clock, int(q.integers(0, 2**31)), canary and task.phrase is not None))
        prev = study
    return patient, visits
