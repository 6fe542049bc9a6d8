"""Radiology phrasing of single findings and devices, per site style.

Each maker returns a :class:`Sentence`: its text and the labels a CheXpert-style
labeler would read from it (``tags``: label -> 1, 0 or -1) plus ``other``,
set when the sentence mentions an abnormality outside the 14 observations
(granuloma, scoliosis, calcification, ...), which the labeler counts against
"No Finding". Wording follows the labeler's rules: negations ("no", "without",
"normal", "has resolved") give 0; hedges ("possible", "may represent",
"cannot be excluded", "concerning for", "versus", "borderline heart size",
"vascular congestion", "blunting of the costophrenic angle") give -1.

Two styles: ``internal`` (MIMIC-like: millimetres, free prose) and ``external`` (CheXpert-Plus-like:
centimetres, other verbs and hedges). A mentioned finding carries its instance detail (side, zone,
size, grade, tip position), so pairing is learnable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .anatomy import RIGHT, Device, Finding

CODES = {
    "EC": "Enlarged Cardiomediastinum", "CM": "Cardiomegaly", "LL": "Lung Lesion", "LO": "Lung Opacity",
    "ED": "Edema", "CO": "Consolidation", "PN": "Pneumonia", "AT": "Atelectasis", "PTX": "Pneumothorax",
    "PE": "Pleural Effusion", "PO": "Pleural Other", "FX": "Fracture", "SD": "Support Devices",
}


@dataclass(frozen=True)
class Sentence:
    text: str
    tags: dict = field(default_factory=dict)  # CheXpert label -> 1.0 | 0.0 | -1.0
    other: bool = False


def S(text: str, other: bool = False, **codes: float) -> Sentence:
    text = text[0].upper() + text[1:]
    return Sentence(text, {CODES[k]: float(v) for k, v in codes.items()}, other)


def pick(rng, options):
    return options[int(rng.random() * len(options))]


def size_text(mm: float, site: str) -> str:
    return f"{mm / 10:.1f} cm" if site == "external" else f"{int(round(mm))} mm"


def lobe(f: Finding) -> str:
    if f.zone == "mid":
        return "right middle lobe" if f.side == RIGHT else "lingula"
    return f"{f.side} {f.zone} lobe"


def zone_text(f: Finding, site: str) -> str:
    if f.zone == "lower":
        return pick_fixed(site, f"{f.side} lung base", f"{f.side} base")
    return pick_fixed(site, f"{f.side} {f.zone} lung", f"{f.side} {f.zone} lung zone")


def pick_fixed(site: str, internal: str, external: str) -> str:
    return external if site == "external" else internal


def ordinal(n: int) -> str:
    return f"{n}{'st' if n == 1 else 'nd' if n == 2 else 'rd' if n == 3 else 'th'}"


# ----------------------------------------------------------------- findings

def finding_sentence(f: Finding, site: str, rng, hedge: bool, terse: bool = False) -> Sentence:
    """The findings-section sentence for ``f`` (hedged when ``hedge``); ``terse``
    gives the short form an impression uses."""
    ext = site == "external"
    k = f.kind
    if terse and not hedge and k in TERSE:
        return S(TERSE[k].format(f=f, lobe=lobe(f), sz=size_text(f.size, site),
                                 noun="nodule" if f.size < 30 else "mass", rib=ordinal(f.rib)), **TERSE_TAGS[k])
    if k == "lesion":
        noun = "nodule" if f.size < 30 else "mass"
        sz = size_text(f.size, site)
        if hedge:
            return S(pick(rng, (f"possible {sz} {noun} in the {lobe(f)}.",
                                f"{sz} rounded density in the {lobe(f)} may represent a {noun}.")), LL=-1)
        if ext:
            return S(pick(rng, (f"{sz} {noun} is seen in the {lobe(f)}.", f"there is a {sz} {noun} at the {zone_text(f, site)}.")), LL=1)
        pre = "unchanged " if f.change == "unchanged" or not f.acute else ""
        return S(pick(rng, (f"{pre}{sz} {noun} in the {lobe(f)}.", f"there is a {pre}{sz} {noun} in the {lobe(f)}.",
                            f"{lobe(f)} {noun} measures {sz}.")), LL=1)
    if k == "granuloma":
        return S(pick(rng, (f"calcified granuloma in the {lobe(f)}.", f"{size_text(f.size, site)} calcified granuloma at the {zone_text(f, site)}.")), other=True)
    if k in ("consolidation", "opacity"):
        ext_word = "large" if f.size > 65 else "patchy" if f.size < 50 else "focal"
        where = pick(rng, (lobe(f), zone_text(f, site)))
        if k == "consolidation":
            if hedge:
                return S(f"{ext_word} opacity in the {where}, atelectasis versus consolidation.", LO=1, AT=-1, CO=-1)
            return S(pick(rng, (f"{ext_word} consolidation in the {where}.", f"there is {ext_word} airspace consolidation in the {where}.",
                                f"{ext_word} consolidation at the {where}.")), CO=1)
        return S(pick(rng, (f"{ext_word} opacity in the {where}.", f"hazy opacity projects over the {where}.",
                            f"there is an ill-defined {ext_word} opacity at the {where}.")), LO=1)
    if k == "edema":
        if hedge or (f.grade == "mild" and rng.random() < 0.4):
            return S(pick(rng, ("mild pulmonary vascular congestion.", "pulmonary vascular congestion without frank edema.")), ED=-1)
        return S(pick(rng, (f"{f.grade} pulmonary edema.", f"{f.grade} interstitial pulmonary edema with perihilar haziness.",
                            f"findings of {f.grade} pulmonary edema.")), ED=1)
    if k == "atelectasis":
        where = f"{f.side} base" if not ext else f"{f.side} lung base"
        if hedge:
            return S(f"linear opacity at the {where} may represent atelectasis.", LO=1, AT=-1)
        return S(pick(rng, (f"{'plate-like' if f.size > 50 else 'subsegmental'} atelectasis at the {where}.",
                            f"{f.side} basilar atelectasis.", f"linear atelectasis at the {where}, {size_text(f.size, site)} in length.")), AT=1)
    if k == "effusion":
        if hedge and f.grade == "small":
            return S(f"blunting of the {f.side} costophrenic angle may reflect a small effusion.", PE=-1, other=True)
        if hedge:
            return S(f"possible {f.grade} {f.side} pleural effusion.", PE=-1)
        side = f"{f.side}-sided" if ext else f.side
        return S(pick(rng, (f"{f.grade} {side} pleural effusion.", f"there is a {f.grade} {side} pleural effusion.",
                            f"{f.grade} {side} pleural effusion with {'meniscus' if f.grade != 'small' else 'blunting of the costophrenic angle'}.")), PE=1)
    if k == "pneumothorax":
        sz = size_text(f.size, site)
        if hedge:
            return S(pick(rng, (f"possible {f.grade} {f.side} apical pneumothorax.", f"questionable {f.side} apical pneumothorax.")), PTX=-1)
        return S(pick(rng, (f"{f.grade} {f.side} apical pneumothorax measuring {sz}.", f"{f.grade} {f.side} pneumothorax, {sz} at the apex.",
                            f"there is a {f.grade} {f.side} pneumothorax.")), PTX=1)
    if k == "pleural_thickening":
        where = "apical" if f.zone == "upper" else "lateral"
        return S(pick(rng, (f"{f.side} {where} pleural thickening.", f"pleural thickening along the {f.side} {where} chest wall.")), PO=1)
    if k == "fracture":
        rib = f"{f.side} {ordinal(f.rib)} rib"
        if hedge:
            return S(f"possible nondisplaced fracture of the {rib}.", FX=-1)
        if f.acute:
            return S(pick(rng, (f"acute fracture of the {rib}.", f"nondisplaced fracture of the {rib}.")), FX=1)
        return S(pick(rng, (f"healed fracture of the {rib}.", f"old {rib} fracture.")), FX=1)
    raise ValueError(k)


TERSE = {"lesion": "{lobe} {noun}, {sz}.", "consolidation": "{lobe} consolidation.",
         "opacity": "{f.side} {f.zone} lung opacity.", "edema": "{f.grade} pulmonary edema.",
         "atelectasis": "{f.side} basilar atelectasis.", "effusion": "{f.grade} {f.side} pleural effusion.",
         "pneumothorax": "{f.grade} {f.side} pneumothorax ({sz}).", "fracture": "{f.side} {rib} rib fracture.",
         "pleural_thickening": "{f.side} pleural thickening."}
TERSE_TAGS = {"lesion": {"LL": 1}, "consolidation": {"CO": 1}, "opacity": {"LO": 1}, "edema": {"ED": 1},
              "atelectasis": {"AT": 1}, "effusion": {"PE": 1}, "pneumothorax": {"PTX": 1}, "fracture": {"FX": 1},
              "pleural_thickening": {"PO": 1}}


def pair_sentence(right: Finding, left: Finding, site: str, rng, hedge: bool) -> Sentence:
    """One sentence for the same finding on both sides (effusions, basal atelectasis)."""
    if right.kind == "effusion":
        if hedge:
            return S("possible bilateral pleural effusions.", PE=-1)
        if right.grade == left.grade:
            return S(pick(rng, (f"{right.grade} bilateral pleural effusions.", f"bilateral {right.grade} pleural effusions.")), PE=1)
        return S(pick(rng, (f"bilateral pleural effusions, {right.grade} on the right and {left.grade} on the left.",
                            f"{right.grade} right and {left.grade} left pleural effusions.")), PE=1)
    if hedge:
        return S("bibasilar opacities may represent atelectasis.", LO=1, AT=-1)
    bigger = "right" if right.size > left.size else "left"
    return S(pick(rng, ("bibasilar atelectasis.", f"bibasilar atelectasis, greater on the {bigger}.")), AT=1)


def pneumonia_impression(f: Finding, rng, hedge: bool) -> Sentence:
    where = lobe(f)
    if f.kind == "consolidation":
        if hedge:
            return S(pick(rng, (f"{where} consolidation concerning for pneumonia.", f"{where} consolidation, pneumonia cannot be excluded.")), CO=1, PN=-1)
        if rng.random() < 0.5:
            return S(f"{where} pneumonia.", PN=1)
        return S(f"{where} consolidation compatible with pneumonia.", PN=1, CO=1)
    return S(pick(rng, (f"{where} opacity may represent pneumonia.", f"{where} opacity suspicious for pneumonia.")), LO=1, PN=-1)


def change_prefix(f: Finding) -> str:
    return {"increased": "increased ", "decreased": "decreased ", "new": "new ", "unchanged": "unchanged "}.get(f.change or "", "")


# ------------------------------------------------------------------ devices

def device_sentence(d: Device, site: str, rng) -> Sentence:
    ext = site == "external"
    if d.kind == "ett":
        cm = f"{d.tip_mm / 10:.1f}" if ext else f"{round(d.tip_mm / 5) / 2:g}"
        return S(pick(rng, (f"endotracheal tube terminates {cm} cm above the carina.",
                            f"the endotracheal tube tip is {cm} cm above the carina.",
                            f"ET tube in place, tip {cm} cm from the carina.")), SD=1)
    if d.kind == "enteric":
        tube = ("enteric tube", "nasogastric tube", "orogastric tube")[d.variant % 3]
        if d.tip == "stomach":
            return S(pick(rng, (f"{tube} courses below the diaphragm with tip in the stomach.", f"{tube} tip in the stomach.")), SD=1)
        return S(f"{tube} terminates in the distal esophagus.", SD=1)
    if d.kind == "cvc":
        line = "right internal jugular central venous catheter" if d.side == RIGHT else "left subclavian central line"
        return S(pick(rng, (f"{line} terminates in the {d.tip}.", f"{line} with tip at the {d.tip}.")), SD=1)
    if d.kind == "picc":
        side = f"{d.side}-sided" if ext else f"{d.side} upper extremity"
        return S(pick(rng, (f"{side} PICC terminates in the {d.tip}.", f"{side} PICC line with tip in the {d.tip}.")), SD=1)
    if d.kind == "pacemaker":
        what = "ICD" if d.tip == "icd" else ("dual-lead pacemaker" if d.leads == 2 else "single-lead pacemaker")
        leads = "the right atrium and right ventricle" if d.leads == 2 else "the right ventricle"
        return S(pick(rng, (f"{d.side}-sided {what} with leads in {leads}.", f"{d.side} chest wall {what}, leads terminating in {leads}.")), SD=1)
    if d.kind == "sternotomy":
        return S(pick(rng, ("median sternotomy wires are intact.", "post-sternotomy changes.", "intact sternotomy wires.")))
    if d.kind == "chest_tube":
        return S(pick(rng, (f"{d.side} chest tube in place with tip at the apex.", f"{d.side}-sided chest tube terminates near the apex.")), SD=1)
    raise ValueError(d.kind)


def device_impression(d: Device, site: str, rng) -> Sentence | None:
    """An impression item for a device that needs one (malposition), else ``None``."""
    if d.kind == "ett" and d.tip_mm < 25:
        return S(f"endotracheal tube {d.tip_mm / 10:.1f} cm above the carina; recommend withdrawal by 2 cm.", SD=1)
    if d.kind == "enteric" and d.tip != "stomach":
        tube = ("enteric tube", "nasogastric tube", "orogastric tube")[d.variant % 3]
        return S(f"{tube} tip in the distal esophagus; advancement recommended.", SD=1)
    if d.kind == "cvc" and d.tip == "right atrium":
        return S("central venous catheter tip in the right atrium; consider withdrawal.", SD=1)
    return None


# ------------------------------------------------------------- heart, misc

def heart_sentence(ctr: float, view: str, site: str, rng) -> Sentence:
    ratio = f" (cardiothoracic ratio {ctr:.2f})" if rng.random() < 0.3 else ""
    if ctr < 0.5:
        if view == "AP" and rng.random() < 0.15:
            return S("heart size is difficult to assess on this AP view.", CM=-1)
        return S(pick(rng, ("heart size is normal.", "the heart is normal in size.", "normal heart size.")), CM=0)
    if ctr < 0.54:
        return S("borderline heart size.", CM=-1) if rng.random() < 0.6 else S(f"mild cardiomegaly{ratio}.", CM=1)
    grade = "mild" if ctr < 0.58 else "moderate" if ctr < 0.63 else "severe"
    adv = {"mild": "mildly", "moderate": "moderately", "severe": "markedly"}[grade]
    return S(pick(rng, (f"{grade} cardiomegaly{ratio}.", f"the heart is {adv} enlarged{ratio}.",
                        f"{adv} enlarged cardiac silhouette{ratio}.")), CM=1)


def mediastinum_sentence(widened: bool, rng) -> Sentence:
    if widened:
        return S(pick(rng, ("the mediastinum is widened.", "widened mediastinum.", "mediastinal widening.")), EC=1)
    return S(pick(rng, ("normal mediastinal contours.", "the cardiomediastinal silhouette is normal.",
                        "mediastinal silhouette is unremarkable.")), EC=0)


NEGATIVES = {
    "pneumothorax": S("no pneumothorax.", PTX=0), "effusion": S("no pleural effusion.", PE=0),
    "consolidation": S("no focal consolidation.", CO=0), "edema": S("no pulmonary edema.", ED=0),
    "fracture": S("no acute fracture.", FX=0),
}
COMBINED_NEGATIVE = S("no focal consolidation, pleural effusion, or pneumothorax.", CO=0, PE=0, PTX=0)
NORMAL_IMPRESSIONS = {
    "internal": (S("no acute cardiopulmonary process."), S("no acute cardiopulmonary abnormality."),
                 S("no acute intrathoracic process."), S("no evidence of pneumonia.", PN=0)),
    "external": (S("no acute cardiopulmonary disease."), S("no radiographic evidence of acute cardiopulmonary disease."),
                 S("no active disease in the chest."), S("no evidence of pneumonia.", PN=0)),
}
