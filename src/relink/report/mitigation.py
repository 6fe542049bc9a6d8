"""What to do: before/after from ``relink mitigate`` outputs, or a generated recommendation.

A ``--mitigated DIR`` is a ``relink mitigate`` study folder (``--study``):
``privacy.json`` and ``embeddings/<name>/``, the mitigated heads applied to
cached trunk features (the release folder, ``--out``, holds only the heads
and the privacy record). The set compared is the one holding exactly the audited pairs
(after the same ``--split``), re-ordered to the audited rows, so before and
after are measured on the same queries; it must come from the audited model
(its ``heads.base_weights_fingerprint`` / ``heads.base_model`` equal the
audited set's ``weights_fingerprint`` / ``model``, when recorded) and cohort
(equal ``cohort_fingerprint``, when recorded). The drop is a paired figure:
the mean per-query difference, with the same patient bootstrap.

``privacy.json`` is read defensively: fields a version of ``relink
mitigate`` did not write are shown as not recorded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import embeddings as emb
from ..errors import RelinkError
from ..retrieval.audit import QueryValues
from ..retrieval.spec import AuditSpec
from .columns import pick, summary


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
    return record


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
                  "epochs", "clip_norm", "release_note")


def privacy_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of a ``privacy.json``: each field or ``None`` (not recorded), and the noise status."""
    status, release = noise_status(record)
    return {**{k: record.get(k) for k in PRIVACY_FIELDS}, "noise_seed": status, "for_release": release}


def mitigated_spec(base: AuditSpec) -> AuditSpec:
    """The audit of a mitigated set: random pools only (before/after at the declared pools)."""
    return base.but(negatives=("random",))


def paired_drop(before: QueryValues, after: QueryValues, released: int) -> list[dict[str, Any]]:
    """Mean per-query drop in recall (before - after) with a patient-bootstrap interval, per shared column."""
    b_keys = [{k: v for k, v in key.items()} for key in before.keys]
    cols_a = [after.column(**key) for key in b_keys]
    diff_set = before.in_set_order(before.values) - after.in_set_order(after.values[:, cols_a])
    ones = np.ones_like(diff_set)  # a difference has no chance level; 1 keeps summarise's lift harmless (unused)
    chances = np.where(np.isnan(diff_set), np.nan, ones)
    qv = replace(before, values=diff_set[before.order], chances=chances[before.order])
    frame = summary(qv)
    return [{"direction": r.direction, "level": r.level, "N": int(r.N), "K": int(r.K), "recall_drop": float(r.value),
             "recall_drop_ci": [float(r.ci_low), float(r.ci_high)], "images_drop": released * float(r.value),
             "images_drop_ci": [released * float(r.ci_low), released * float(r.ci_high)]}
            for r in frame.itertuples(index=False) if r.metric == "recall"]


def compare(before: QueryValues, after: QueryValues, pools: tuple[int, ...], released: int) -> list[dict[str, Any]]:
    """Paired drops at the declared pools (all K, both directions and levels, random pools)."""
    where = dict(negatives="random", N=pools, estimator="exact", metric="recall")
    return paired_drop(pick(before, **where), pick(after, **where), released)


def recommendation(verdict: dict[str, Any], rows: list[dict[str, Any]], spec, released: int,
                   runs: list[dict[str, Any]]) -> list[str]:
    """Short generated advice: what the numbers suggest a custodian does next."""
    level = verdict["level"]
    if runs:
        out = []
        for run in runs:
            p = run["privacy"]
            eps = "non-private" if p.get("private") is False else (
                f"\u03b5 = {p['epsilon']:.3g}" if isinstance(p.get("epsilon"), (int, float)) else "\u03b5 not recorded")
            out.append(f"With the heads of {run['name']} ({eps}) the verdict is {run['verdict']['level']}.")
        releasable = [r for r in runs if r["privacy"].get("for_release")]
        if not releasable:
            reasons = sorted({str(r["privacy"]["release_reason"]) for r in runs
                              if isinstance(r["privacy"].get("release_reason"), str)})
            out.append("No mitigated run here is marked fit for release" + (f" ({' '.join(reasons)})" if reasons else "")
                       + ": release only heads that `relink mitigate` marks for_release (secret noise, a start and a "
                       "trunk independent of the private rows).")
        return out
    if level == "low":
        return ["No action is indicated under the declared threat model and thresholds. Re-run this report when the "
                "model, the release or the attacker's pool changes."]
    out = ["Retrain only the projection heads with differential privacy: `relink mitigate --embeddings DIR "
           "--bank PUBLIC --epsilon E --delta D --out RELEASE --study STUDY` (the noise stays secret by default), "
           "then re-run this report with `--mitigated STUDY` to see the before/after at the declared pool."]
    worst = max(verdict["rows"], key=lambda r: r["excess_images"] if math.isfinite(r["excess_images"]) else -1)
    per_image = worst["excess_images"] / released if released else float("nan")
    if per_image > 0 and math.isfinite(per_image):
        m_star = int(spec.excess_elevated / per_image)
        out.append(f"Releasing fewer images scales the counts, not the lift: at the measured rate about {m_star:,} "
                   f"released images keep the expected excess at {spec.excess_elevated:g} or below "
                   f"({worst['direction'].replace('_', ' ')}, N = {worst['N']:,}).")
    return out
