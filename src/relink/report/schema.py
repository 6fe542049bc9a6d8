"""The report's JSON: a versioned schema, the leak scan, and the atomic write of page and JSON together.

``relink-report/2`` — top-level keys (all always present):

==================  ===============================================================
``schema``          ``"relink-report/2"``; a reader checks it before anything else
``relink_output``   ``"report"`` (so relink recognises its own output)
``generator``       ``"relink report <version>"``
``record``          the decision record: ``report_id`` (sha256 of this JSON with
                    the generation time and the id itself left out: the same
                    inputs give the same id), ``generated_utc``, ``release_name``,
                    ``relink_version``, ``commit``, ``decision``, ``assumptions``,
                    ``residual_risk``, ``sign_off`` (roles to sign on paper)
``threat_model``    the declared attacker pools, released M, report coverage pi,
                    top K, audited counts and splits, the model named by spec and
                    weights fingerprint (never a local path), cohort fingerprint
``verdict``         ``level`` (low | inconclusive | elevated | high: the worst over
                    the panel), ``decision``, ``rule`` (the printed lines),
                    ``scope``, ``thresholds``, ``rows`` (every judged row, with
                    ``model`` when the panel has several), ``set_by``, and for an
                    inconclusive verdict ``patients_to_decide``
``headline``        ``sentence`` and the numbers it was generated from
``sentences``       the same sentence for every declared pool, level and K
``risk``            per (direction, level, N, K), random pools: recall, chance,
                    lift, expected/chance/excess images for M, each with intervals
``hard_negatives``  ``available``, ``note``, ``rows`` (matched figures, coverage,
                    random pools on the same queries, or ``suppressed``)
``concentration``   ``label_groups``, ``views``, ``studies_per_patient``,
                    ``rank_histogram``, ``min_cell``
``mitigation``      ``runs``: name, privacy summary, risk, verdict, paired drop;
                    ``retrained_heads``: ``measured`` and its one ``sentence``
``panel``           the attacker panel: ``models`` (per model: ``model``, ``role``
                    custodian | attacker, ``risk`` rows, its own ``verdict``),
                    ``worst`` (the verdict over the panel), ``size``
``confident``       confident re-links: ``available``, ``rows`` (per model,
                    attacker, direction, level, N, precision target: share and
                    images with intervals), ``rule``, ``level``, ``set_by``, ``note``
``risk_curve``      ``rows``: expected images re-linked and lift against N (K = 1
                    and 10, both directions), ``guide`` to choosing N
``recommendation``  generated sentences, each re-checked against the verdict
``methods``         the methods box
``settings``        the report spec and the audit spec it ran
``provenance``      relink version, commit, package versions, input names
==================  ===============================================================

Intervals are ``[low, high]`` lists; a number that does not exist is ``null``. A new field is a minor change; a
removed or renamed one, or a new value of a closed set (version 2: ``inconclusive``), moves the version. Before
anything is written both texts pass the leak scanner (every ``pair_id``, ``patient_id`` and ``study_id`` of the
audited rows, and with a cohort manifest its reports); one hit refuses both writes.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterable

from ..errors import RelinkError
from ..io import atomic_path, canonical, json_safe, writing
from ..leakscan import scan_texts

SCHEMA = "relink-report/2"
KEYS = ("schema", "relink_output", "generator", "record", "threat_model", "verdict", "headline", "sentences", "risk",
        "panel", "confident", "risk_curve", "hard_negatives", "concentration", "mitigation", "recommendation",
        "methods", "settings", "provenance")


def report_id(doc: dict[str, Any]) -> str:
    """sha256 (16 hex digits) of the document's JSON without its generation time and its own id."""
    import hashlib

    body = dict(doc)
    body["record"] = {k: v for k, v in doc.get("record", {}).items() if k not in ("report_id", "generated_utc")}
    text = json.dumps(json_safe(body), sort_keys=True, allow_nan=False, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def document(record: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    """The versioned document: ``record`` (from :func:`relink.report.build.build`) under the schema keys, with
    the decision record's id and time filled in."""
    from datetime import datetime, timezone

    doc = canonical({"schema": SCHEMA, "relink_output": "report", **record, "provenance": provenance})
    rec = dict(doc.get("record", {}))
    rec.setdefault("relink_version", provenance.get("relink_version"))
    rec.setdefault("commit", provenance.get("commit"))
    doc["record"] = rec
    doc["record"]["report_id"] = report_id(doc)
    doc["record"]["generated_utc"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    missing = [k for k in KEYS if k not in doc]
    extra = [k for k in doc if k not in KEYS]
    if missing or extra:
        raise ValueError(f"report document does not match {SCHEMA}: missing {missing}, unexpected {extra}")
    return doc


def leak_check(texts: dict[str, str], identifiers: dict[str, Iterable[str]], reports: Iterable[str] = ()) -> None:
    """Refuse (one line, naming the output and the kind of hit, never the value) when an output leaks."""
    findings = scan_texts(texts, reports, identifiers)
    if findings:
        raise RelinkError(f"leak scan: {'; '.join(map(str, findings))}; nothing was written")


def write_outputs(outputs: dict[Path, tuple[str, str]]) -> None:
    """Write every ``path -> (text, flag)`` atomically: all temporaries first, then the renames."""
    with contextlib.ExitStack() as stack:
        for path, (text, flag) in outputs.items():
            tmp = stack.enter_context(atomic_path(path))
            with writing(path, flag):
                tmp.write_text(text, encoding="utf-8")


def json_text(doc: dict[str, Any]) -> str:
    """Indented, valid JSON with the schema keys in their documented order (nested keys sorted)."""
    return json.dumps(json_safe({k: doc[k] for k in KEYS}), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
