"""Patient and study parameters of the synthetic cohort: one source of truth.

Every image and every report is written from these parameters, never from each other. Geometry is in
millimetres on the chest's canonical frame: ``x`` towards the image's right (the patient's *left*),
``y`` downwards, origin at the centre of the thorax; acquisition never changes these numbers. A
:class:`Patient` holds what persists across studies, a :class:`Study` what one acquisition shows.
Sampling uses only the ``rng`` passed in, so a patient is a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

RIGHT, LEFT = "right", "left"
ZONES = ("upper", "mid", "lower")
#: Probabilities of 1..6 studies per patient (mean ~2.6).
STUDY_COUNT_P = (0.30, 0.25, 0.18, 0.12, 0.09, 0.06)


def study_count(u: float, study_count_p=STUDY_COUNT_P) -> int:
    """The number of studies for a uniform draw ``u`` in [0, 1): 1 + the bin of ``u`` under ``study_count_p``
    (probabilities of 1, 2, ... studies; normalised here). One draw whatever the table, so that every
    other draw of the patient is the same under another table."""
    return 1 + int(np.searchsorted(np.cumsum(study_count_p), u * sum(study_count_p)))


@dataclass(frozen=True)
class Finding:
    """One abnormality. ``side`` is the patient's side (``right`` = image left).

    ``kind``: lesion, granuloma, opacity, consolidation, edema, atelectasis, pneumothorax, effusion,
    pleural_thickening, fracture. ``size`` in mm (diameter, effusion height, pneumothorax gap); ``x, y``
    the centre on the canonical frame; ``acute`` tells a new fracture from a healed one; ``pneumonia``
    an airspace process the reader calls infection; ``change`` against the previous study (``new``,
    ``unchanged``, ``increased``, ``decreased``).
    """

    kind: str
    side: str | None = None
    zone: str | None = None
    size: float = 0.0
    grade: str | None = None
    x: float = 0.0
    y: float = 0.0
    rib: int = 0
    acute: bool = True
    pneumonia: bool = False
    change: str | None = None


@dataclass(frozen=True)
class Device:
    """A line, tube or implant. ``tip`` names where it ends (for a pacemaker,
    ``"icd"`` marks a defibrillator), ``tip_mm`` how far (ETT: above the
    carina), ``side`` where it enters or sits, ``leads`` a pacer's lead count."""

    kind: str  # ett, enteric, cvc, picc, pacemaker, sternotomy, chest_tube
    side: str | None = None
    tip: str | None = None
    tip_mm: float = 0.0
    leads: int = 0
    variant: int = 0  # which name the reader uses for it (kept while the device stays)


@dataclass(frozen=True)
class Acquisition:
    """How the image was taken: geometry and exposure (renderer input only)."""

    rotation: float  # radians
    zoom: float  # >1 shows more of the patient
    shift_x: float  # mm
    shift_y: float
    gain: float
    offset: float
    gamma: float
    noise: float
    collimation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # fractions l, r, t, b
    marker: str | None = None  # side marker letter burnt into the image
    blur: bool = False


@dataclass
class Patient:
    index: int
    patient_id: str
    sex: str
    age: int
    width: float  # lateral lung margin from the midline, mm
    soft: float  # soft tissue beyond the ribs, mm
    apex: float  # lung apex y
    dome_r: float  # right hemidiaphragm dome y
    dome_l: float
    cp_depth: float  # costophrenic angle below the dome
    med_r: float  # medial lung margin, distance from the midline
    med_l: float
    ctr: float  # baseline cardiothoracic ratio
    heart_shift: float  # heart centre towards the patient's left, fraction of its width
    heart_aspect: float  # height / width
    mw: float  # upper mediastinal half width, mm
    carina: float  # carina y
    rib_spacing: float
    rib_phase: float
    rib_curve: float
    scoliosis: float  # signed lateral spine deviation, mm (0 = straight)
    aorta: str | None  # "tortuous" | "calcified" | None
    hyperinflated: bool
    elevated: str | None  # side of an elevated hemidiaphragm
    acuity: float  # 0 outpatient .. 1 intensive care
    n_studies: int
    chronic: list[Finding] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)


@dataclass
class Study:
    index: int
    view: str  # "AP" | "PA"
    ctr: float
    mw: float
    inspiration: float  # lung height factor; < 0.9 reads as low lung volumes
    findings: list[Finding]
    devices: list[Device]
    acq: Acquisition
    resolved: list[Finding] = field(default_factory=list)  # present on the previous study, gone now


def _pick(rng: np.random.Generator, options):
    return options[int(rng.random() * len(options))]


def _side(rng, p_right: float = 0.5) -> str:
    return RIGHT if rng.random() < p_right else LEFT


def lung_point(p: Patient, side: str, zone: str, rng, lateral: float | None = None) -> tuple[float, float]:
    """A point inside the given lung zone (mm), away from the edges."""
    s = -1.0 if side == RIGHT else 1.0
    med = p.med_r if side == RIGHT else p.med_l
    dome = p.dome_r if side == RIGHT else p.dome_l
    top, h = p.apex + 25.0, (dome - p.apex - 40.0)
    z = ZONES.index(zone)
    y = top + h * (z + 0.25 + 0.5 * rng.random()) / 3.0
    lat = 0.25 + 0.5 * rng.random() if lateral is None else lateral
    x = s * (med + 18.0 + lat * (p.width - med - 36.0))
    return x, y


def sample_patient(rng: np.random.Generator, index: int, patient_id: str, study_count_p=STUDY_COUNT_P) -> Patient:
    sex = "F" if rng.random() < 0.47 else "M"
    age = int(18 + rng.random() * 75)
    width = (128.0 if sex == "F" else 140.0) + rng.normal(0, 8)
    hyper = rng.random() < 0.07
    apex = -150.0 + rng.normal(0, 8) - (12.0 if hyper else 0.0)
    dome_r = 95.0 + rng.normal(0, 9) + (18.0 if hyper else 0.0)
    elevated = _pick(rng, (RIGHT, LEFT)) if rng.random() < 0.06 else None
    dome_l = dome_r + 10.0 + rng.random() * 10.0
    if elevated == RIGHT:
        dome_r -= 28.0
    elif elevated == LEFT:
        dome_l -= 30.0
    # A minority runs with a big heart; their baseline persists across studies.
    ctr = rng.uniform(0.56, 0.66) if rng.random() < 0.2 else rng.uniform(0.40, 0.49)
    acuity = float(rng.beta(0.8, 1.4))
    p = Patient(
        index=index, patient_id=patient_id, sex=sex, age=age, width=width,
        soft=15.0 + rng.random() * 35.0, apex=apex, dome_r=dome_r, dome_l=dome_l,
        cp_depth=22.0 + rng.random() * 16.0, med_r=20.0 + rng.random() * 8.0,
        med_l=16.0 + rng.random() * 8.0, ctr=ctr, heart_shift=0.17 + rng.random() * 0.1,
        heart_aspect=0.68 + rng.random() * 0.14, mw=22.0 + rng.random() * 9.0,
        carina=-50.0 + rng.normal(0, 7), rib_spacing=21.0 + rng.random() * 6.0,
        rib_phase=rng.random(), rib_curve=0.6 + rng.random() * 0.6,
        scoliosis=(rng.choice((-1.0, 1.0)) * rng.uniform(8, 18)) if rng.random() < 0.1 else 0.0,
        aorta=_pick(rng, ("tortuous", "calcified")) if rng.random() < 0.15 + 0.2 * (age > 65) else None,
        hyperinflated=hyper, elevated=elevated, acuity=acuity,
        n_studies=study_count(rng.random(), study_count_p),
    )
    _sample_chronic(rng, p)
    return p


def _sample_chronic(rng, p: Patient) -> None:
    if rng.random() < 0.12:
        p.devices.append(Device("sternotomy"))
    if rng.random() < 0.08:
        p.devices.append(Device("pacemaker", side=RIGHT if rng.random() < 0.15 else LEFT,
                                leads=1 + int(rng.random() < 0.7), tip="icd" if rng.random() < 0.3 else None))
    if rng.random() < 0.10:
        side, zone = _side(rng), _pick(rng, ZONES)
        x, y = lung_point(p, side, zone, rng)
        p.chronic.append(Finding("granuloma", side, zone, size=9.0 + rng.random() * 6.0, x=x, y=y, acute=False))
    if rng.random() < 0.07:
        side, zone = _side(rng), _pick(rng, ZONES)
        x, y = lung_point(p, side, zone, rng)
        p.chronic.append(Finding("lesion", side, zone, size=float(rng.uniform(14, 60)), x=x, y=y, acute=False))
    if rng.random() < 0.06:
        p.chronic.append(Finding("fracture", _side(rng), rib=int(4 + rng.random() * 6), acute=False))
    if rng.random() < 0.05:
        p.chronic.append(Finding("pleural_thickening", _side(rng), zone=_pick(rng, ("upper", "lower")),
                                 size=4.0 + rng.random() * 5.0, acute=False))


# Acute findings: base rate per study (scaled by acuity) and the chance of persisting.
ACUTE_RATES = {
    "effusion": (0.30, 0.7), "atelectasis": (0.28, 0.55), "opacity": (0.16, 0.5),
    "consolidation": (0.14, 0.6), "edema": (0.16, 0.6), "pneumothorax": (0.07, 0.45),
    "lesion": (0.03, 0.9), "fracture": (0.025, 0.9),
}


def _new_acute(rng, p: Patient, kind: str) -> list[Finding]:
    if kind == "effusion":
        sides = (RIGHT, LEFT) if rng.random() < 0.35 else (_side(rng, 0.55),)
        out = []
        for side in sides:
            size = float(rng.uniform(12, 110))
            grade = "small" if size < 35 else "moderate" if size < 70 else "large"
            out.append(Finding("effusion", side, "lower", size=size, grade=grade))
        return out
    if kind == "atelectasis":
        sides = (RIGHT, LEFT) if rng.random() < 0.4 else (_side(rng),)
        return [Finding("atelectasis", s, "lower", size=float(rng.uniform(30, 70))) for s in sides]
    if kind in ("opacity", "consolidation"):
        side, zone = _side(rng, 0.55), _pick(rng, ("upper", "mid", "lower", "lower"))
        x, y = lung_point(p, side, zone, rng)
        lo, hi = (35, 75) if kind == "opacity" else (40, 90)
        return [Finding(kind, side, zone, size=float(rng.uniform(lo, hi)), x=x, y=y,
                        pneumonia=rng.random() < (0.35 if kind == "opacity" else 0.6))]
    if kind == "edema":
        return [Finding("edema", "bilateral", grade=_pick(rng, ("mild", "mild", "moderate", "severe")))]
    if kind == "pneumothorax":
        size = float(rng.uniform(8, 60))
        grade = "small" if size < 20 else "moderate" if size < 40 else "large"
        return [Finding("pneumothorax", _side(rng), "upper", size=size, grade=grade)]
    if kind == "lesion":
        side, zone = _side(rng), _pick(rng, ZONES)
        x, y = lung_point(p, side, zone, rng)
        return [Finding("lesion", side, zone, size=float(rng.uniform(14, 65)), x=x, y=y)]
    if kind == "fracture":
        return [Finding("fracture", _side(rng), rib=int(3 + rng.random() * 7), acute=True)]
    raise ValueError(kind)


def _evolve(rng, f: Finding) -> Finding:
    """The same finding at the next study: same place, drifted size."""
    if f.kind == "edema":
        grade = _pick(rng, ("mild", "moderate", "severe"))
        order = ("mild", "moderate", "severe")
        change = "unchanged" if grade == f.grade else ("increased" if order.index(grade) > order.index(f.grade) else "decreased")
        return replace(f, grade=grade, change=change)
    factor = float(rng.uniform(0.6, 1.4))
    size = f.size * factor
    change = "unchanged" if 0.85 < factor < 1.15 else ("increased" if factor > 1 else "decreased")
    grade = f.grade
    if f.kind == "effusion":
        size = min(size, 120.0)
        grade = "small" if size < 35 else "moderate" if size < 70 else "large"
    elif f.kind == "pneumothorax":
        grade = "small" if size < 20 else "moderate" if size < 40 else "large"
    return replace(f, size=size, grade=grade, change=change)


def _acquisition(rng, view: str, site: str) -> Acquisition:
    if site == "external":
        c = rng.random(4) * 0.09 * (rng.random() < 0.7)
        return Acquisition(
            rotation=float(rng.normal(0, 0.05)), zoom=float(rng.uniform(1.08, 1.25)),
            shift_x=float(rng.normal(0, 10)), shift_y=float(rng.normal(-15, 10)),
            gain=float(rng.uniform(1.0, 1.15)), offset=float(rng.uniform(0.0, 0.06)),
            gamma=float(rng.uniform(0.72, 0.88)), noise=float(rng.uniform(0.02, 0.04)),
            collimation=tuple(float(v) for v in c), marker=("L" if rng.random() < 0.8 else "R"), blur=True,
        )
    return Acquisition(
        rotation=float(rng.normal(0, 0.035)), zoom=float(rng.uniform(0.93, 1.07)),
        shift_x=float(rng.normal(0, 7)), shift_y=float(rng.normal(0, 7)),
        gain=float(rng.uniform(0.92, 1.08)) * (0.95 if view == "AP" else 1.0),
        offset=float(rng.uniform(-0.04, 0.04)), gamma=float(rng.uniform(0.88, 1.15)),
        noise=float(rng.uniform(0.012, 0.03)),
    )


def _lines_and_tubes(rng, p: Patient, prev: Study | None, icu: bool) -> list[Device]:
    old = {d.kind: d for d in (prev.devices if prev else [])}
    out: list[Device] = []

    def keep_or_new(kind, p_new, make):
        if kind in old and rng.random() < 0.7:
            d = old[kind]
            # Tubes get pulled back or advanced between films.
            out.append(replace(d, tip_mm=max(5.0, d.tip_mm + rng.normal(0, 8))) if kind == "ett" else d)
        elif rng.random() < p_new:
            out.append(make())

    if icu:
        keep_or_new("ett", 0.55, lambda: Device("ett", tip_mm=float(rng.uniform(15, 75))))
        has_ett = any(d.kind == "ett" for d in out)
        keep_or_new("enteric", 0.75 if has_ett else 0.15,
                    lambda: Device("enteric", tip=_pick(rng, ("stomach",) * 5 + ("distal esophagus",)),
                                   variant=int(rng.random() * 3)))
        keep_or_new("cvc", 0.45, lambda: Device(
            "cvc", side=RIGHT if rng.random() < 0.7 else LEFT,
            tip=_pick(rng, ("upper SVC", "mid SVC", "mid SVC", "cavoatrial junction", "right atrium"))))
        keep_or_new("chest_tube", 0.08, lambda: Device("chest_tube", side=_side(rng)))
    keep_or_new("picc", 0.12 if icu else 0.05, lambda: Device(
        "picc", side=_side(rng), tip=_pick(rng, ("mid SVC", "cavoatrial junction", "right atrium", "upper SVC"))))
    return out


def sample_study(rng: np.random.Generator, p: Patient, index: int, prev: Study | None, site: str) -> Study:
    """The patient's ``index``-th study, correlated with ``prev`` (same patient)."""
    icu = rng.random() < 0.15 + 0.8 * p.acuity
    view = ("AP" if rng.random() < 0.92 else "PA") if icu else ("PA" if rng.random() < 0.85 else "AP")
    findings = list(p.chronic)
    prev_acute: dict[str, list[Finding]] = {}
    for f in (prev.findings if prev is not None else []):
        if f.acute:  # chronic findings are carried by the patient, not the previous study
            prev_acute.setdefault(f.kind, []).append(f)
    resolved = []
    scale = 0.25 + 1.5 * p.acuity
    for kind, (rate, persist) in ACUTE_RATES.items():
        if kind in prev_acute:
            if rng.random() < persist:
                findings.extend(_evolve(rng, f) for f in prev_acute[kind])
                continue
            resolved.extend(prev_acute[kind])
        if rng.random() < rate * scale:
            findings.extend(replace(f, change="new" if prev is not None else None) for f in _new_acute(rng, p, kind))
    ctr = float(np.clip(p.ctr + rng.normal(0, 0.015) + (0.04 if any(f.kind == "edema" for f in findings) else 0.0), 0.36, 0.75))
    mw = p.mw + (rng.uniform(14, 26) if rng.random() < 0.03 + 0.05 * p.acuity else 0.0)
    devices = list(p.devices) + _lines_and_tubes(rng, p, prev, icu)
    if any(d.kind == "chest_tube" for d in devices):
        tube_sides = {d.side for d in devices if d.kind == "chest_tube"}
        findings = [f for f in findings if not (f.kind == "pneumothorax" and f.side in tube_sides and rng.random() < 0.5)]
    inspiration = float(np.clip(rng.normal(0.97 if view == "PA" else 0.9, 0.05), 0.78, 1.08))
    kinds_now = {f.kind for f in findings}
    return Study(index=index, view=view, ctr=ctr, mw=mw, inspiration=inspiration,
                 findings=findings, devices=devices, acq=_acquisition(rng, view, site),
                 resolved=[f for f in resolved if f.kind not in kinds_now])
