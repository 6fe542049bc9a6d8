"""Section extraction for MIMIC-CXR free-text reports.

The rules follow the official MIMIC-CXR section parser (MIT-LCP/mimic-cxr,
``txt/section_parser.py`` and ``txt/create_section_files.py``), re-expressed
here so that the cohort's report text matches what the dataset's authors
extract:

* a section starts at a header ``"\\n NAME:"`` followed by whitespace, where
  NAME is upper-case letters, spaces and ``()/,-``; the text before the first
  header is the ``preamble``; a report with no header is one ``full report``
  section;
* after a header the search for the next one resumes past the end of the
  header's line (the official parser does this to avoid bad parses);
* header names are normalised (typos, synonyms, "chest, two views" ->
  findings, ...); empty findings/impression sections are dropped;
* when neither findings nor impression survives, the last section is split at
  its first blank line (``"\\n \\n"``) and the rest becomes ``last_paragraph``;
* per-study overrides: a few reports have hand-set character spans
  (:data:`CUSTOM_INDICES`, ``[0, 0]`` = no usable text) or a differently named
  section that holds the conclusion (:data:`CUSTOM_SECTION_NAMES`).

Unlike the official script, :func:`select_report`'s fallback skips sections that are empty after
stripping (the official one would return the empty one).
"""

from __future__ import annotations

import re
from typing import Sequence

HEADER = re.compile(r"\n ([A-Z ()/,-]+):\s", re.DOTALL)

#: Retrieval-text fallbacks when no requested section exists (official order).
FALLBACK_ORDER: tuple[str, ...] = ("impression", "findings", "last_paragraph", "comparison")

# Exact header -> canonical name (the official parser's frequency-ordered table).
_SYNONYMS: dict[str, str] = {
    "preamble": "preamble", "impression": "impression", "comparison": "comparison",
    "indication": "indication", "findings": "findings", "examination": "examination",
    "technique": "technique", "history": "history", "comparisons": "comparison",
    "clinical history": "history", "reason for examination": "indication",
    "notification": "notification", "reason for exam": "indication",
    "clinical information": "history", "exam": "examination",
    "clinical indication": "indication", "conclusion": "impression",
    "chest, two views": "findings", "recommendation(s)": "recommendations",
    "type of examination": "examination", "reference exam": "comparison",
    "patient history": "history", "addendum": "addendum", "comparison exam": "comparison",
    "date": "date", "comment": "comment", "findings and impression": "impression",
    "wet read": "wet read", "comparison film": "comparison", "recommendations": "recommendations",
    "findings/impression": "impression", "pfi": "history", "recommendation": "recommendations",
    "wetread": "wet read", "ndication": "impression", "impresson": "impression",
    "imprression": "impression", "imoression": "impression", "impressoin": "impression",
    "imprssion": "impression", "impresion": "impression", "imperssion": "impression",
    "mpression": "impression", "impession": "impression", "findings/ impression": "impression",
    "finding": "findings", "findins": "findings", "findindgs": "findings", "findgings": "findings",
    "findngs": "findings", "findnings": "findings", "finidngs": "findings",
    "idication": "indication", "reference findings": "findings", "comparision": "comparison",
    "comparsion": "comparison", "comparrison": "comparison", "comparisions": "comparison",
}
# A header containing one of these words is that section (checked in this order).
_MAIN_SECTIONS = ("impression", "findings", "history", "comparison", "addendum")
# A header describing the whole study ("PA AND LATERAL CHEST") is a findings section.
_FINDINGS_LIKE = re.compile(
    "(chest|portable|pa and lateral|lateral and pa|ap and lateral|lateral and ap|frontal and|"
    "two views|frontal view|pa view|ap view|one view|lateral view|bone window|frontal upright|"
    "frontal semi-upright|ribs|pa and lat)"
)

#: Studies whose conclusion sits in a section with another name (official list).
CUSTOM_SECTION_NAMES: dict[str, str] = {
    "s50913680": "recommendations", "s59363654": "examination", "s59279892": "technique",
    "s59768032": "recommendations", "s57936451": "indication", "s50058765": "indication",
    "s53356173": "examination", "s53202765": "technique", "s50808053": "technique",
    "s51966317": "indication", "s50743547": "examination", "s56451190": "note",
    "s59067458": "recommendations", "s59215320": "examination", "s55124749": "indication",
    "s54365831": "indication", "s59087630": "recommendations", "s58157373": "recommendations",
    "s56482935": "recommendations", "s58375018": "recommendations", "s54654948": "indication",
    "s55157853": "examination", "s51491012": "history",
}

#: Studies whose usable text is a hand-set character span (official list);
#: ``(0, 0)`` marks reports with no findings at all.
CUSTOM_INDICES: dict[str, tuple[int, int]] = {
    "s50525523": (201, 349), "s57564132": (233, 554), "s59982525": (313, 717),
    "s53488209": (149, 475), "s54875119": (234, 988), "s50196495": (59, 399),
    "s56579911": (59, 218), "s52648681": (292, 631), "s59889364": (172, 453),
    "s53514462": (73, 377), "s59505494": (59, 450), "s53182247": (59, 412),
    "s51410602": (47, 320), "s56412866": (522, 822), "s54986978": (59, 306),
    "s59003148": (262, 505), "s57150433": (61, 394), "s56760320": (219, 457),
    "s59562049": (158, 348), "s52674888": (145, 296), "s55258338": (192, 568),
    "s59330497": (140, 655), "s52119491": (179, 454),
    "s58235663": (0, 0), "s50798377": (0, 0), "s54168089": (0, 0), "s53071062": (0, 0),
    "s56724958": (0, 0), "s54231141": (0, 0), "s53607029": (0, 0), "s52035334": (0, 0),
}


def normalise_name(header: str) -> str:
    """Canonical section name for a raw header (lower-cased, synonyms merged)."""
    name = header.lower().strip()
    if name in _SYNONYMS:
        return _SYNONYMS[name]
    for main in _MAIN_SECTIONS:
        if main in name:
            return main
    if _FINDINGS_LIKE.search(name):
        return "findings"
    return name


def split_sections(text: str) -> list[tuple[str, str]]:
    """Split a report into ``(canonical name, raw text)`` pairs, in report order."""
    match = HEADER.search(text)
    if match is None:
        names, bodies = ["full report"], [text]
    else:
        names, bodies = ["preamble"], [text[: match.start(1)]]
        while match is not None:
            name, start = match.group(1), match.end()
            line_end = text.find("\n", start)
            # Resume past the header's own line, as the official parser does.
            match = HEADER.search(text, line_end if line_end != -1 else start)
            names.append(name)
            bodies.append(text[start: match.start() if match else len(text)])
    pairs = [(normalise_name(n), b) for n, b in zip(names, bodies)]
    # A report title like "CHEST, PA LATERAL:" followed by nothing is no findings section.
    pairs = [(n, b) for n, b in pairs if not (n in ("impression", "findings") and not b.strip())]
    names_left = {n for n, _ in pairs}
    if not names_left & {"impression", "findings"}:
        last_name, last_body = pairs[-1]
        if "\n \n" in last_body:
            head, _, rest = last_body.partition("\n \n")
            pairs[-1] = (last_name, head)
            pairs.append(("last_paragraph", rest))
    return pairs


def clean(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends."""
    return " ".join(text.split())


def report_sections(text: str, study: str | None = None) -> dict[str, str]:
    """Cleaned text of the *last* section of each name; ``study`` (``"s50414267"``) applies the
    overrides (:data:`CUSTOM_INDICES` yields only ``{"custom": span}``)."""
    if study in CUSTOM_INDICES:
        start, end = CUSTOM_INDICES[study]
        return {"custom": clean(text[start:end])}
    found: dict[str, str] = {}
    for name, body in split_sections(text):
        found[name] = clean(body)  # later sections of the same name win
    custom = CUSTOM_SECTION_NAMES.get(study or "")
    if custom is not None and custom in found:
        found["impression"] = found[custom]
    return found


def select_report(
    text: str,
    study: str | None = None,
    sections: Sequence[str] = ("findings", "impression"),
) -> str:
    """The retrieval text of one report ('' when nothing usable is left): the requested sections
    present, joined with a space in the order requested; with none, the first of :data:`FALLBACK_ORDER`."""
    found = report_sections(text, study)
    if "custom" in found:
        return found["custom"]
    parts = [found[s] for s in sections if found.get(s)]
    if parts:
        return " ".join(parts)
    for name in FALLBACK_ORDER:
        if found.get(name):
            return found[name]
    return ""
