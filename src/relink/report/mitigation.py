"""What to do: before/after from ``relink mitigate`` outputs, or a generated recommendation.

A ``--mitigated DIR`` is a ``relink mitigate`` study folder (``privacy.json``, ``embeddings/<name>/``). The set
compared holds exactly the audited pairs (after the same ``--split``), re-ordered to the audited rows, from the
audited model and cohort (:func:`check_same_model`), so the drop is paired on the same queries. ``privacy.json``
is read defensively: a field a version of ``relink mitigate`` did not write is shown as not recorded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import embeddings as emb
from ..errors import RelinkError
from ..retrieval.audit import QueryValues
from .columns import pick


@dataclass
class Mitigated:
    """A mitigated set aligned to the audited rows, and its privacy record."""

    name: str
    privacy: dict[str, Any]
    es: emb.EmbeddingSet


def _fail(path: str, why: str) -> RelinkError:
    return RelinkError(f"--mitigated {path}: {why}")


def _privacy(folder: Path, path: str) -> dict[str, Any]:
    f = folder / "privacy.json"
    if not f.is_file():
        raise _fail(path, "no privacy.json (expected a `relink mitigate` output folder)")
    try:
        record = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError):
        raise _fail(path, "privacy.json is not valid JSON") from None
    if not isinstance(record, dict):
        raise _fail(path, "privacy.json must hold a JSON object")
    for field, (check, what) in PRIVACY_TYPES.items():
        if field in record and not check(record[field]):
            raise _fail(path, f"privacy.json field '{field}' must be {what}")
    return record


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _or_null(check):
    return lambda v: v is None or check(v)


_NUMBER = (_or_null(_number), "a finite number or null")
_TEXT = (_or_null(lambda v: isinstance(v, str)), "a string or null")
# What the report reads of privacy.json, and the JSON type of each: a field of another type (``"epsilon": "inf"``)
# is refused by name rather than printed, compared or formatted as if it were right. Fields not listed are not read.
PRIVACY_TYPES: dict[str, tuple[Any, str]] = {
    "private": (lambda v: isinstance(v, bool), "true or false"),
    "for_release": (lambda v: isinstance(v, bool), "true or false"),
    **{f: _NUMBER for f in ("epsilon", "target_epsilon", "rdp_epsilon", "prv_epsilon", "delta", "noise_multiplier",
                            "clip_norm")},
    "epochs": (_or_null(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
               "a whole number >= 0 or null"),
    **{f: _TEXT for f in ("accountant", "privacy_unit", "release_note", "release_reason", "bank_note")},
    "noise_seed": (_or_null(lambda v: v == "secret" or (isinstance(v, int) and not isinstance(v, bool))),
                   "\"secret\", an integer or null"),
    "trained_on": (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
                   "an object whose values are strings"),
}


def _pair_ids(folder: Path, split: str | None) -> set[str] | None:
    try:
        rows = pd.read_parquet(folder / "rows.parquet")
    except Exception:  # an unreadable candidate is simply not the match
        return None
    if "pair_id" not in rows:
        return None
    if split is not None:
        if "split" not in rows:
            return None
        rows = rows[rows["split"].astype(str) == split]
    return set(rows["pair_id"].astype(str))


def resolve(path: str, audited: emb.EmbeddingSet, split: str | None = None) -> Mitigated:
    """Find, load, check and align the mitigated set of ``path`` for the ``audited`` rows."""
    folder = Path(path)
    if not folder.is_dir():
        raise _fail(path, "not found (expected a `relink mitigate` output folder)")
    privacy = _privacy(folder, path)
    root = folder / "embeddings"
    candidates = sorted(p for p in root.iterdir() if (p / "rows.parquet").is_file()) if root.is_dir() else []
    if not candidates:
        raise _fail(path, "no embedding set under embeddings/ (expected a `relink mitigate` output folder)")
    want_ids = audited.rows["pair_id"].astype(str)
    want = set(want_ids)
    match = next((c for c in candidates if _pair_ids(c, split) == want), None)
    if match is None:
        raise _fail(path, "no set under embeddings/ holds exactly the audited pairs (a mitigation of another cohort "
                          "or split?)")
    es = emb.load(match)
    if split is not None:
        es = es.split(split)
    es = es.subset(pd.Index(es.rows["pair_id"].astype(str)).get_indexer(want_ids))
    same = lambda s: s.rows["patient_id"].astype(str).to_numpy()  # noqa: E731
    if not np.array_equal(same(es), same(audited)):
        raise _fail(path, "its pairs belong to other patients than the audited pairs (another cohort?)")
    check_same_model(es.meta, audited.meta, path)
    return Mitigated(folder.name, privacy, es)


def check_same_model(meta: dict[str, Any], audited: dict[str, Any], path: str) -> None:
    """Refuse a mitigated set whose heads started from another model, or whose cohort differs."""
    heads = meta.get("heads")
    if not isinstance(heads, dict):
        raise _fail(path, "its meta.json records no mitigated heads (not re-projected by `relink mitigate`)")
    pairs = (("base_weights_fingerprint", "weights_fingerprint", "its heads were trained from another model (base "
              "weights fingerprint differs from --embeddings')"),
             ("base_model", "model",
              "its heads were trained from another model (base model differs from --embeddings')"))
    for mine, theirs, why in pairs:
        a, b = heads.get(mine), audited.get(theirs)
        if a is not None and b is not None and str(a) != str(b):
            raise _fail(path, why)
    a, b = meta.get("cohort_fingerprint"), audited.get("cohort_fingerprint")
    if a is not None and b is not None and str(a) != str(b):
        raise _fail(path, "it was embedded from another cohort (cohort fingerprint differs from --embeddings')")


def noise_status(record: dict[str, Any]) -> tuple[str, bool | None]:
    """How the DP noise seed stands, and whether the heads are fit for release (None: not recorded)."""
    for_release = record.get("for_release")
    seed = record.get("noise_seed", "missing")
    if record.get("private") is False:
        return "no noise (non-private training): no guarantee", False
    if seed == "secret":
        return "secret (never written)", True if for_release is None else bool(for_release)
    if seed not in ("missing", None):
        return "published: the noise can be replayed; for study, not for release", False
    if "seed" in record:
        return "recorded in privacy.json: the noise can be replayed; for study, not for release", False
    return "not recorded", None if for_release is None else bool(for_release)


PRIVACY_FIELDS = ("private", "epsilon", "delta", "accountant", "rdp_epsilon", "noise_multiplier", "privacy_unit",
                  "epochs", "clip_norm", "release_note", "release_reason", "trained_on", "bank_note")


def privacy_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of a ``privacy.json``: each field or ``None`` (not recorded), and the noise status."""
    status, release = noise_status(record)
    return {**{k: record.get(k) for k in PRIVACY_FIELDS}, "noise_seed": status, "for_release": release}


def paired_drop(before: QueryValues, after: QueryValues, released: float) -> list[dict[str, Any]]:
    """Mean per-query drop in recall (before - after) with a paired patient-clustered interval, per shared column
    (:func:`relink.retrieval.contrast.paired_contrast`, the project's one paired comparison)."""
    from ..retrieval.contrast import paired_contrast

    patients = before.in_set_order(before.patient)
    out = []
    for f, key in enumerate(before.keys):
        if key["metric"] != "recall":
            continue
        b = before.in_set_order(before.values[:, f])
        a = after.in_set_order(after.values[:, after.column(**key)])
        c = paired_contrast(a, b, patients, "difference", n_boot=before.spec.n_boot, level=before.spec.ci)
        out.append({"direction": key["direction"], "level": key["level"], "N": int(key["N"]), "K": int(key["K"]),
                    "recall_drop": c.value, "recall_drop_ci": [c.ci_low, c.ci_high],
                    "images_drop": released * c.value,
                    "images_drop_ci": [released * c.ci_low, released * c.ci_high]})
    return out


def compare(before: QueryValues, after: QueryValues, pools: tuple[int, ...], released: float) -> list[dict[str, Any]]:
    """Paired drops at the declared pools (all K, both directions and levels, random pools)."""
    where = dict(negatives="random", N=pools, estimator="exact", metric="recall")
    return paired_drop(pick(before, **where), pick(after, **where), released)


def _at_release(rows: list[dict[str, Any]], released: int, new: int) -> list[dict[str, Any]]:
    """Risk rows re-scaled from ``released`` to ``new`` images (counts scale with M; recall and lift do not)."""
    f = new / released
    out = []
    for r in rows:
        r = dict(r)
        for key in ("expected_images", "chance_images", "excess_images"):
            r[key] = r[key] * f
        for key in ("expected_images_ci", "excess_images_ci"):
            r[key] = [x * f for x in r[key]]
        out.append(r)
    return out


def retrained_heads(contrast: dict[str, Any] | None) -> dict[str, Any]:
    """The one sentence on heads re-trained without DP on public pairs (an attacker holding the released trunks).

    ``contrast``: the paired contrast of Recall@1, re-trained against original heads on the audited rows
    (``value``, ``ci`` as ``[low, high]``, ``N``, ``kind`` ``"difference"`` (default) or ``"relative"``), or
    ``None`` while it is not measured. Unless the interval shows the re-trained heads worse, DP heads (which only
    replace the heads) protect nothing against that attacker.
    """
    if contrast is None:
        return {"measured": False, "sentence": None}
    lo, hi = contrast["ci"]
    n = contrast.get("N")
    at = f" at N = {n:,}" if isinstance(n, int) else ""
    if contrast.get("kind") == "relative":
        diff = f"relative change of Recall@1 {100 * contrast['value']:+.1f}%{at}, interval {100 * lo:+.1f}% to {100 * hi:+.1f}%"
    else:
        diff = f"Recall@1 difference {contrast['value']:+.3g}{at}, interval {lo:+.3g} to {hi:+.3g}"
    if math.isfinite(hi) and hi < 0:
        sentence = (f"Heads re-trained without DP on public pairs re-link fewer images than the original heads "
                    f"({diff}): the DP heads still have to be judged against this attacker by their own figures above.")
    else:
        sentence = (f"Heads re-trained without DP on public pairs re-link the released images as well as the original "
                    f"heads ({diff}): against an attacker who re-trains heads on the released trunks, the DP heads "
                    "protect nothing.")
    return {"measured": True, "sentence": sentence, **contrast}


CONTROLS = ("keep the images under controlled access with a data-use agreement (no public release), or do not "
            "release them")


def recommendation(verdict: dict[str, Any], rows: list[dict[str, Any]], spec, released: int,
                   runs: list[dict[str, Any]], confident_high_at=lambda factor: False) -> list[str]:
    """Advice that is re-computed before it is given: a step appears only if applying it lowers the verdict.

    ``confident_high_at(f)``: whether the confident re-link rule still says high when the release is ``f`` times
    its declared size (:func:`relink.report.confident.high_at`)."""
    from .verdict import judge

    level = verdict["level"]
    order = ("low", "inconclusive", "elevated", "high")
    out = []
    for run in runs:
        p = run["privacy"]
        eps = "non-private" if p.get("private") is False else (
            f"\u03b5 = {p['epsilon']:.3g}" if isinstance(p.get("epsilon"), (int, float)) else "\u03b5 not recorded")
        lower = order.index(run["verdict"]["level"]) < order.index(level)
        out.append(f"With the heads of {run['name']} ({eps}) the verdict is {run['verdict']['level']}"
                   + (" (lower: releasing these heads instead is a control that works here)." if lower else
                      " (not lower than without them)."))
        if lower and not p.get("for_release"):
            out.append(f"{run['name']} is not marked fit for release ({p.get('release_reason') or 'reason not recorded'}"
                       "): re-run `relink mitigate` as its record says before relying on it.")
    if level == "low":
        return out + ["No action is indicated under the declared threat model and thresholds: the upper bounds lie "
                      "below them. Re-run this report when the model, the release or the attacker's pool changes."]
    if level == "inconclusive":
        n = verdict.get("patients_to_decide")
        return out + [(f"Audit more patients (about {n:,}) to decide the verdict, " if n else
                       "No practical audit of this kind (at most a hundred times this one) would decide the verdict "
                       "at these estimates; ")
                      + f"until then treat it as elevated: {CONTROLS}."]
    if not runs:
        out.append("Retrain only the projection heads with differential privacy: `relink mitigate --embeddings DIR "
                   "--bank PUBLIC --epsilon E --delta D --out RELEASE --study STUDY` (the noise stays secret by default), "
                   "then re-run this report with `--mitigated STUDY`; it is advice only if the re-run verdict is lower.")
    worst = max(verdict["rows"], key=lambda r: r["excess_images"] if math.isfinite(r["excess_images"]) else -1)
    per_image = worst["excess_images"] / released if released else float("nan")
    if per_image > 0 and math.isfinite(per_image):
        m_star = int(spec.excess_elevated / per_image)
        if m_star >= 1:
            again = judge(_at_release(rows, released, m_star), spec, spec.ci,
                          verdict.get("audited_patients"))
            if confident_high_at(m_star / released):
                again["level"] = "high"
            if order.index(again["level"]) < order.index(level):
                out.append(f"Releasing at most {m_star:,} images (--released {m_star}) gives the verdict "
                           f"{again['level']} (re-computed at that size).")
    out.append(f"Controls that remain whatever the size: {CONTROLS}.")
    return out
