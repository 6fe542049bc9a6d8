"""Report text and labels of one study, written from the same parameters as its image.

The reader is imperfect on purpose, so that pairing is learnable but not trivial: findings are
sometimes left out or hedged, wording, order and pertinent negatives vary, and serial studies are
compared with the previous one ("increased", "has resolved").

Labels are what a CheXpert-style labeler reads from the **impression**
(:data:`LABEL_SECTION`), as for MIMIC-CXR: per observation 1 (mentioned),
0 (negated), -1 (hedged) or NaN (not mentioned), conflicts resolved as the
labeler does (1 beats -1 beats 0), and "No Finding" = 1 when no observation
other than Support Devices is positive or uncertain and no other abnormality
is mentioned (NaN otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..labels import CHEXPERT_LABELS
from .anatomy import Patient, Study
from .phrases import (COMBINED_NEGATIVE, NEGATIVES, NORMAL_IMPRESSIONS, S, Sentence, change_prefix, pair_sentence,
                      device_impression, device_sentence, finding_sentence, heart_sentence,
                      mediastinum_sentence, pick, pneumonia_impression)

LABEL_SECTION = "impression"

MENTION_P = {"lesion": 0.95, "granuloma": 0.55, "consolidation": 0.92, "opacity": 0.88, "edema": 0.9,
             "atelectasis": 0.72, "effusion": 0.93, "pneumothorax": 0.97, "pleural_thickening": 0.75, "fracture": 0.8}
HEDGE_P = {"lesion": 0.12, "consolidation": 0.15, "edema": 0.12, "atelectasis": 0.15, "effusion": 0.12,
           "pneumothorax": 0.1, "fracture": 0.1}
IMPRESSION_P = {"pneumothorax": 0.95, "consolidation": 0.9, "opacity": 0.7, "edema": 0.85, "effusion": 0.8,
                "lesion": 0.85, "atelectasis": 0.45, "fracture": 0.6, "pleural_thickening": 0.3, "granuloma": 0.05}
PRIORITY = ("pneumothorax", "consolidation", "opacity", "edema", "effusion", "lesion", "atelectasis",
            "fracture", "pleural_thickening", "granuloma")
SECTION_OF = {"lesion": "lungs", "granuloma": "lungs", "consolidation": "lungs", "opacity": "lungs",
              "edema": "lungs", "atelectasis": "lungs", "effusion": "pleura", "pneumothorax": "pleura",
              "pleural_thickening": "pleura", "fracture": "bones"}
ORDERS = {
    "internal": (("view", "devices", "lungs", "pleura", "heart", "other", "bones"),
                 ("view", "devices", "heart", "lungs", "pleura", "bones", "other")),
    "external": (("view", "heart", "lungs", "pleura", "devices", "bones", "other"),),
}
HEADINGS = {"heart": "HEART AND MEDIASTINUM:", "lungs": "LUNGS:", "pleura": "PLEURA:",
            "devices": "LINES AND TUBES:", "bones": "BONES:", "other": "OTHER:"}
RESOLVED = {"effusion": ("interval resolution of the {side} pleural effusion.", "PE"),
            "pneumothorax": ("the previously seen {side} pneumothorax has resolved.", "PTX"),
            "consolidation": ("interval resolution of the {side} consolidation.", "CO"),
            "edema": ("interval resolution of pulmonary edema.", "ED")}
FALSE_HEDGES = (S("cannot exclude early pneumonia.", PN=-1), S("possible trace left pleural effusion.", PE=-1),
                S("possible trace right pleural effusion.", PE=-1), S("mild bibasilar atelectasis is possible.", AT=-1))


@dataclass(frozen=True)
class Report:
    findings: str
    impression: str
    labels: dict  # the 14 CheXpert labels in canonical order, float (NaN = not mentioned)

    @property
    def text(self) -> str:
        """The retrieval text: findings then impression, each under its heading."""
        return f"FINDINGS: {self.findings} IMPRESSION: {self.impression}"


def label_sentences(sentences: list[Sentence]) -> dict[str, float]:
    """Aggregate sentence tags the way the CheXpert labeler aggregates mentions."""
    found: dict[str, list[float]] = {}
    no_finding = True
    for s in sentences:
        for label, value in s.tags.items():
            found.setdefault(label, []).append(value)
            if label != "Support Devices" and value != 0.0:
                no_finding = False
        no_finding = no_finding and not s.other
    out = {label: math.nan for label in CHEXPERT_LABELS}
    for label, values in found.items():
        out[label] = 1.0 if 1.0 in values else (-1.0 if -1.0 in values else 0.0)
    if no_finding:
        out["No Finding"] = 1.0
    return out


def _restyle(s: Sentence, prefix: str) -> Sentence:
    """Prefix a comparison word ("increased") to a sentence."""
    if not prefix:
        return s
    text = s.text
    for lead in ("There is an ", "There is a ", "There is "):
        if text.startswith(lead):
            text = text[len(lead):]
    return Sentence(prefix[0].upper() + prefix[1:] + text[0].lower() + text[1:], s.tags, s.other)


def _group(findings) -> list[tuple]:
    """Findings as report items: a bilateral effusion or basal atelectasis is one item."""
    items, seen = [], set()
    for i, f in enumerate(findings):
        if i in seen:
            continue
        if f.kind in ("effusion", "atelectasis"):
            j = next((j for j in range(i + 1, len(findings)) if findings[j].kind == f.kind), None)
            if j is not None:
                seen.add(j)
                pair = (f, findings[j]) if f.side == "right" else (findings[j], f)
                items.append(pair)
                continue
        items.append((f,))
    return items


def _other_sentences(p: Patient, st: Study, rng) -> list[Sentence]:
    out = []
    if st.inspiration < 0.88 and rng.random() < 0.6:
        out.append(S(pick(rng, ("lung volumes are low.", "low lung volumes."))))
    if p.hyperinflated and rng.random() < 0.7:
        out.append(S(pick(rng, ("the lungs are hyperinflated.", "hyperinflation, consistent with COPD.")), other=True))
    if p.elevated and rng.random() < 0.7:
        out.append(S(f"elevation of the {p.elevated} hemidiaphragm.", other=True))
    if p.aorta and rng.random() < 0.6:
        out.append(S("tortuous thoracic aorta.") if p.aorta == "tortuous" else S("calcification of the aortic knob.", other=True))
    if p.scoliosis and rng.random() < 0.5:
        out.append(S(f"mild {'dextro' if p.scoliosis < 0 else 'levo'}scoliosis of the thoracic spine.", other=True))
    return out


def write_report(p: Patient, st: Study, site: str, rng) -> Report:
    """Findings and impression of ``st`` in the ``site``'s style, and their labels."""
    sec: dict[str, list[Sentence]] = {k: [] for k in HEADINGS}
    sec["view"] = []
    impression: list[tuple[int, Sentence]] = []
    ext = site == "external"
    if rng.random() < (0.5 if ext else 0.35):
        views = {"AP": ("portable AP view of the chest.", "single portable semi-upright AP view."),
                 "PA": ("PA and lateral views of the chest.", "frontal and lateral views of the chest.")}
        sec["view"].append(S(pick(rng, views[st.view])))
    present = {f.kind for f in st.findings}
    for item in _group(st.findings):
        f = item[0]
        hedge = rng.random() < HEDGE_P.get(f.kind, 0.0)
        change = change_prefix(f) if f.acute else ""
        mentioned = rng.random() < MENTION_P[f.kind]
        if mentioned:
            s = pair_sentence(*item, site, rng, hedge) if len(item) == 2 else finding_sentence(f, site, rng, hedge)
            sec[SECTION_OF[f.kind]].append(_restyle(s, change if rng.random() < 0.4 else ""))
        if rng.random() < IMPRESSION_P[f.kind] * (1.0 if mentioned else 0.3):
            if len(item) == 2:
                s = pair_sentence(*item, site, rng, hedge)
            elif f.kind in ("consolidation", "opacity") and f.pneumonia:
                s = pneumonia_impression(f, rng, hedge or rng.random() < 0.5)
            else:
                s = finding_sentence(f, site, rng, hedge, terse=rng.random() < 0.7)
            impression.append((PRIORITY.index(f.kind), _restyle(s, change if rng.random() < 0.6 else "")))
    for f in st.resolved:
        if f.kind in RESOLVED and rng.random() < 0.5:
            text, code = RESOLVED[f.kind]
            s = S(text.format(side=f.side), **{code: 0})
            if rng.random() < 0.5:
                impression.append((len(PRIORITY), s))
            else:
                sec[SECTION_OF[f.kind]].append(s)
    for d in st.devices:
        if rng.random() < 0.9:
            sec["devices"].append(device_sentence(d, site, rng))
        item = device_impression(d, site, rng)
        if item is None and d.kind != "sternotomy" and rng.random() < 0.2:
            item = device_sentence(d, site, rng)
        if item is not None:
            impression.append((-1, item))
    if any(d.kind != "sternotomy" for d in st.devices) and rng.random() < 0.6 and not any(i[0] == -1 for i in impression):
        impression.append((len(PRIORITY), S("support devices as above.", SD=1) if ext else S("lines and tubes as described above.", SD=1)))
    if rng.random() < 0.85:
        sec["heart"].append(heart_sentence(st.ctr, st.view, site, rng))
    widened = st.mw > p.mw + 8.0
    if widened and rng.random() < 0.9:
        sec["heart"].append(mediastinum_sentence(True, rng))
        if rng.random() < 0.6:
            impression.append((3, S("widened mediastinum; consider CT.", EC=1) if rng.random() < 0.5
                                  else mediastinum_sentence(True, rng)))
    elif rng.random() < 0.35:
        sec["heart"].append(mediastinum_sentence(False, rng))
    if st.ctr >= 0.54 and rng.random() < 0.55:
        impression.append((4, S("cardiomegaly.", CM=1) if st.ctr < 0.63 else S("severe cardiomegaly.", CM=1)))
    absent = [k for k in ("pneumothorax", "effusion", "consolidation") if k not in present]
    if len(absent) == 3 and rng.random() < 0.35:
        sec["pleura"].append(COMBINED_NEGATIVE)
    else:
        for k in absent + ["edema"] * ("edema" not in present):
            if rng.random() < 0.45:
                sec["pleura" if k != "consolidation" and k != "edema" else "lungs"].append(NEGATIVES[k])
    if "fracture" not in present and rng.random() < 0.12:
        sec["bones"].append(NEGATIVES["fracture"])
    if rng.random() < 0.05:
        s = pick(rng, FALSE_HEDGES)
        sec["lungs"].append(s)
        impression.append((2, s))
    sec["other"].extend(_other_sentences(p, st, rng))

    findings_text = _findings_text(sec, site, rng)
    items = [s for _, s in sorted(impression, key=lambda t: t[0])][:5]
    if not items:
        # A reader does not call a film normal after describing disease in it.
        items = [s for name in ("lungs", "pleura", "bones") for s in sec[name]
                 if any(v != 0.0 for v in s.tags.values())][:1]
    if not items:
        items = [pick(rng, NORMAL_IMPRESSIONS[site])]
        if rng.random() < 0.25:
            items.append(NEGATIVES["pneumothorax"])
    elif "pneumothorax" not in present and rng.random() < 0.2:
        items.append(NEGATIVES["pneumothorax"])
    if len(items) > 1 and (ext or rng.random() < 0.45):
        impression_text = " ".join(f"{i}. {s.text}" for i, s in enumerate(items, 1))
    else:
        impression_text = " ".join(s.text for s in items)
    labels = label_sentences(items if LABEL_SECTION == "impression" else items + sum(sec.values(), []))
    return Report(findings_text, impression_text, labels)


def _findings_text(sec: dict[str, list[Sentence]], site: str, rng) -> str:
    order = pick(rng, ORDERS[site])
    parts = []
    for name in order:
        sentences = sec.get(name) or []
        if site == "external" and name != "view":
            if name == "lungs" and not sentences:
                sentences = [S("clear.")]
            if not sentences:
                continue
            parts.append(f"{HEADINGS[name]} " + " ".join(s.text for s in sentences))
        else:
            parts.extend(s.text for s in sentences)
    return " ".join(parts) if parts else "The lungs are clear."
