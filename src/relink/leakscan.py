"""Leak scan: no report text and no patient/study/image identifier in what is published.

What relink publishes from a credentialed cohort is scanned before it is written; a hit refuses the
write. Identifiers: every id of at least :data:`MIN_ID_LENGTH` characters (small integers are not ids),
as a whole token. Report text: any run of :data:`NGRAM` words of a report (the outputs' n-grams are
indexed, the reports streamed past). Notebook images are skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

NGRAM = 8
MIN_ID_LENGTH = 5
TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")
_WORD = re.compile(r"[a-z0-9]+")
_TOKEN = re.compile(r"[A-Za-z0-9_\-./]+")


@dataclass(frozen=True)
class Finding:
    file: str
    kind: str  # "identifier" | "report text"
    detail: str  # which column / how long a match; never the text itself

    def __str__(self) -> str:
        return f"{self.file}: {self.kind} ({self.detail})"


def notebook_text(path: Path) -> str:
    """Sources and text outputs of a notebook (images and widget state left out)."""
    nb = json.loads(Path(path).read_text())
    parts: list[str] = []
    for cell in nb.get("cells", []):
        parts.append("".join(cell.get("source", "")))
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append("".join(out["text"]))
            for mime, value in (out.get("data") or {}).items():
                if mime in TEXT_MIMES:
                    parts.append(value if isinstance(value, str) else "".join(value) if isinstance(value, list) else json.dumps(value))
            if "traceback" in out:
                parts.append("\n".join(out["traceback"]))
    return "\n".join(parts)


def file_text(path: Path) -> str:
    """Text of a notebook, table (.parquet/.csv/.json) or any text file."""
    path = Path(path)
    if path.suffix == ".ipynb":
        return notebook_text(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_csv(index=False)
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _ngrams(words: list[str], n: int = NGRAM) -> Iterator[tuple[str, ...]]:
    for i in range(len(words) - n + 1):
        yield tuple(words[i:i + n])


def scan_texts(texts: dict[str, str], reports: Iterable[str], identifiers: dict[str, Iterable[str]]) -> list[Finding]:
    """Findings in ``texts`` (name -> text) for the given report texts and identifiers (column -> values)."""
    findings: list[Finding] = []
    index: dict[tuple[str, ...], str] = {}
    tokens: dict[str, set[str]] = {}
    for name, text in texts.items():
        for gram in _ngrams(_WORD.findall(text.lower())):
            index.setdefault(gram, name)
        tokens[name] = set(_TOKEN.findall(text))
    for column, values in identifiers.items():
        wanted = {str(v) for v in values if v is not None and len(str(v)) >= MIN_ID_LENGTH}
        for name, toks in tokens.items():
            hits = wanted & toks
            if hits:
                findings.append(Finding(name, "identifier", f"{len(hits)} {column} value(s)"))
    flagged: set[str] = set()
    for report in reports:
        for gram in _ngrams(_WORD.findall(str(report).lower())):
            name = index.get(gram)
            if name is not None and name not in flagged:
                flagged.add(name)
                findings.append(Finding(name, "report text", f"a run of {NGRAM} words of a report"))
                break
    return findings


def scan_paths(paths: Iterable[Path], frames: Iterable[pd.DataFrame], root: Path | None = None) -> list[Finding]:
    """Scan files against the reports and identifiers of cohort ``frames``."""
    texts = {}
    for p in paths:
        p = Path(p)
        name = str(p.relative_to(root)) if root and p.is_relative_to(root) else p.name
        texts[name] = file_text(p)
    frames = list(frames)
    reports = (r for f in frames for r in f["report"].astype(str))
    ids = {col: pd.concat([f[col].astype(str) for f in frames]).unique() for col in ("pair_id", "patient_id", "study_id")}
    return scan_texts(texts, reports, ids)
