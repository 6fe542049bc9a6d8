"""One audit pass and every figure of the report, as one JSON-ready record.

:func:`build` makes one pass per model (:func:`audit_spec`; confident re-links are counted in the same pass) and
one random-pool pass per mitigated set, and derives every section by summarising columns and rows of them.
The record holds numbers, settings and the declared threat model; never an identifier or report text.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import __version__
from ..embeddings import EmbeddingSet, public_model_name
from ..retrieval.audit import QueryValues, audit_queries, summarise
from ..retrieval.matching import group_summary, label_groups
from ..retrieval.spec import AuditSpec
from . import confident as confident_section
from . import curve, groups, hard, mitigation, panel as attacker_panel, risk, verdict
from .columns import pick
from .threat import ReportSpec, Threat, fit

def hard_negatives_ok(es: EmbeddingSet) -> tuple[bool, str]:
    """Whether pathology-matched pools can be formed, and a note for the page (a sentence without identifiers)."""
    labels = es.labels()
    empty = np.isnan(labels).all(axis=1)
    if empty.all():
        return False, "the audited rows carry no CheXpert labels, so pathology-matched pools cannot be formed"
    _, alone = group_summary(label_groups(labels)["pathology_matched"], ~empty)
    if alone == len(es):
        return False, "every label vector is held by a single pair, so no query has a matched distractor"
    if empty.any():
        return True, (f"{int(empty.sum()):,} audited rows carry no label value at all: they belong to no pathology "
                      "group, so no matched pool covers them")
    return True, ""


def audit_spec(threat: Threat, with_hard: bool, confident: tuple[float, ...] = ()) -> AuditSpec:
    """The report's one audit; ``confident``: precision targets of the threshold attacker counted in it."""
    spec = threat.spec
    return AuditSpec(pools=threat.audit_pools(with_hard), ks=spec.ks, directions=("image_to_report", "report_to_image"),
                     levels=("study", "patient"), negatives=("random",) + (("pathology_matched",) if with_hard else ()),
                     n_boot=spec.n_boot, random_state=spec.random_state, ci=spec.ci, confident=tuple(confident))


def confident_of(qv: QueryValues, name: str, cohort: str, pools: Sequence[int]) -> pd.DataFrame:
    """The confident re-link rows (:mod:`relink.report.confident`) of an audit pass that counted them, at the
    declared ``pools`` (integers), as the audit's metric table holds them, ``model`` = ``name``; then the pass's
    counts are let go (``qv.confident`` = None), so that no later summary of a subset recomputes them."""
    from dataclasses import replace

    from ..retrieval.summary import CONFIDENT_COLUMNS
    from ..tables import METRIC_COLUMNS

    conf = qv.confident
    n = len(qv)
    # a view with no value column: its summary is the confident rows alone (same code, same numbers)
    view = replace(qv, keys=[], values=np.zeros((n, 0)), chances=np.zeros((n, 0)), rank_keys=[],
                   ranks=np.zeros((n, 0)), rank_null=[], groups=[],
                   confident={"counts": conf["counts"], "ranks": conf["ranks"],
                              "pools": [p for p in conf["pools"] if p in set(pools)]})
    frame = summarise(view, model=name, cohort=cohort)
    qv.confident = None
    return frame.loc[:, list(METRIC_COLUMNS) + list(CONFIDENT_COLUMNS)].reset_index(drop=True)


def audited_fingerprint(es: EmbeddingSet) -> str:
    """sha256 (16 hex digits) of the audited rows' sorted pair ids: the same rows give the same fingerprint whatever
    the model or the cohort file they were embedded from (meta.json's fingerprint covers the whole embedded cohort)."""
    import hashlib

    ids = sorted(es.rows["pair_id"].astype(str))
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def threat_model(es: EmbeddingSet, spec: ReportSpec, released: int, source: dict[str, Any],
                 declared: tuple = ()) -> dict[str, Any]:
    """The declared threat model as given, in plain words, with what identifies the model and the cohort."""
    meta = es.meta
    pools = ", ".join("full (every audited pair: " + f"{len(es):,})" if p == "full" else f"{p:,}"
                      for p in (declared or spec.attacker_pools))
    pi = spec.report_coverage
    holds = ("the model (its weights, or a service that returns its embeddings), the released images, and for each "
             f"released image a pool of N candidate reports (N = {pools}) that contains that image's own report")
    if pi < 1:
        holds += f", for a share \u03c0 = {pi:g} of the released images (for the others it holds no true report)"
    return {
        "attacker_pools": list(spec.attacker_pools), "declared_pools": [str(p) for p in (declared or
                                                                                        spec.attacker_pools)],
        "released": released, "released_default": spec.released is None, "top_k": list(spec.top_k),
        "report_coverage": pi,
        "audited_pairs": len(es), "audited_patients": int(es.rows["patient_id"].nunique()),
        "model": public_model_name(meta.get("model"), meta.get("weights_fingerprint")),
        "weights_fingerprint": meta.get("weights_fingerprint"),
        "cohort": es.cohort_name, "cohort_fingerprint": audited_fingerprint(es),
        "embedded_cohort_fingerprint": meta.get("cohort_fingerprint"),
        "embeddings": source.get("embeddings"), "split": source.get("split"),
        "statement": (f"The attacker holds {holds}. It ranks the candidates by the model's cosine similarity. The "
                      f"custodian releases M = {released:,} images"
                      + (" (the audited rows)" if spec.released is None else "")
                      + f"; every count below is \u03c0 \u00d7 M \u00d7 Recall@K(N) with \u03c0 = {pi:g}."),
        "why": ("A re-linked report matters because report text carries what de-identification removed from the "
                "image: names, dates and places that slip through, and the patient's diagnoses and history; linking "
                "a released image to it re-attaches them."),
    }


def _summary(qv: QueryValues, es: EmbeddingSet) -> pd.DataFrame:
    """Recall and MRR rows of every column (confident rows: :func:`confident_of`). The page shows no median
    rank, so its rows are left out."""
    return summarise(pick(qv, metric=("recall", "mrr")), model=public_model_name(es.meta.get("model"),
                                                                            es.meta.get("weights_fingerprint")),
                     cohort=es.cohort_name)


def _declared(frame: pd.DataFrame, threat: Threat) -> pd.DataFrame:
    """The exact random-pool rows at the declared pools: what the risk rows and the verdict read."""
    keep = (frame.negatives == "random") & frame.N.isin(threat.spec.attacker_pools) & (frame.estimator == "exact")
    return frame[keep]


def _of_models(confident: pd.DataFrame | None, models: list[str]) -> pd.DataFrame | None:
    """The confident rows of the named models (none without a ``model`` column or without models)."""
    if confident is None or not models or "model" not in confident:
        return None
    return confident[confident["model"].isin(models)]


def _tagged(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [{**r, "model": name} for r in rows]


def build(es: EmbeddingSet, spec: ReportSpec, source: dict[str, Any] | None = None, views: pd.Series | None = None,
          mitigated: Sequence[mitigation.Mitigated] = (), progress: bool = False,
          name: str | None = None, panel: Sequence[tuple[str, EmbeddingSet]] = (),
          confident: pd.DataFrame | None = None, confident_targets: tuple[float, ...] = (),
          retrained: dict[str, Any] | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """The report record and the full tidy metric table it was built from (``views``: aligned to ``es.rows``).

    ``name``: how the outputs name the custodian's model (default: its spec without local paths);
    ``panel``: the attacker's other models as ``(name, set)``, each set holding ``es``'s rows in ``es``'s order
    (:func:`relink.report.panel.align`); their random-pool rows join the verdict and the table.
    ``confident``: metric rows of confident re-links (:mod:`relink.report.confident`) for these models, or None;
    ``confident_targets``: when ``confident`` is None, the precision targets at which the audit pass itself
    counts them, for every model of the panel (none: the report has no confident rows).
    ``retrained``: the paired Recall@1 difference of heads re-trained on public pairs
    (:func:`relink.report.mitigation.retrained_heads`), or None while it is not measured.
    """
    source = source or {}
    threat = fit(spec, len(es))
    spec, released = threat.spec, threat.released
    with_hard, hard_note = hard_negatives_ok(es)
    counting = tuple(confident_targets) if confident is None else ()
    aspec = audit_spec(threat, with_hard, counting)
    qv = audit_queries(es, aspec, progress=progress)
    own = name or (attacker_panel.names([es, *(o for _, o in panel)])[0] if panel else attacker_panel.model_name(es))
    counted = [confident_of(qv, own, es.cohort_name, spec.attacker_pools)] if counting else []
    frame = _summary(qv, es)
    random_rows = risk.risk_rows(_declared(frame, threat), released, spec.report_coverage)
    n_patients = int(es.rows["patient_id"].nunique())

    # the other models of the panel and the mitigated sets: random pools only, on the same rows
    random_only = aspec.but(negatives=("random",))
    others, frames = [], [frame]
    for name, other in panel:
        qv_o = audit_queries(other, random_only.but(pools=spec.attacker_pools), progress=progress)
        if counting:
            counted.append(confident_of(qv_o, name, other.cohort_name, spec.attacker_pools))
        frame_o = _summary(qv_o, other).assign(model=name)
        frames.append(frame_o)
        others.append((name, other, risk.risk_rows(_declared(frame_o, threat), released, spec.report_coverage)))
    if panel:
        frames[0] = frame.assign(model=own)
    other_rows = [r for name, _, rows in others for r in _tagged(rows, name)]
    all_rows = (_tagged(random_rows, own) if panel else random_rows) + other_rows

    if counting:
        confident = pd.concat(counted, ignore_index=True)
    judged = verdict.judge(all_rows, spec, spec.ci, n_patients)
    judged["decision"] = verdict.decision(judged["level"])
    confident_rec = confident_section.section(confident, spec, released, spec.attacker_pools)
    judged = confident_section.verdict_with(judged, confident_rec, verdict.decision)
    head = risk.headline(random_rows, spec.attacker_pools[0], released, spec.ci, spec.report_coverage)
    sentences = [risk.sentence(r, released, spec.ci, spec.report_coverage) for r in random_rows
                 if r["direction"] == "image_to_report" and r["N"] in spec.attacker_pools]

    members = [{"model": own, "role": "custodian", "risk": random_rows,
                "verdict": verdict.judge(random_rows, spec, spec.ci, n_patients)}]
    members += [{"model": name, "role": "attacker", "risk": rows, "verdict": verdict.judge(rows, spec, spec.ci,
                                                                                           n_patients)}
                for name, _, rows in others]

    # the panel's other models keep their confident re-links after the custodian's heads are replaced
    others_confident = confident_section.section(_of_models(confident, [name for name, _, _ in others]), spec,
                                                 released, spec.attacker_pools)
    runs = []
    for m in mitigated:
        qv_m = audit_queries(m.es, random_only.but(confident=()), progress=progress)
        frame_m = _summary(qv_m, m.es)
        rows_m = risk.risk_rows(frame_m[frame_m.N.isin(spec.attacker_pools)], released, spec.report_coverage)
        # the attacker keeps the panel's other models: the mitigated heads replace the custodian's model only
        after = (_tagged(rows_m, f"{own}, heads of {m.name}") if panel else rows_m) + other_rows
        after_verdict = confident_section.verdict_with(verdict.judge(after, spec, spec.ci, n_patients),
                                                       others_confident, verdict.decision)
        runs.append({"name": m.name, "privacy": mitigation.privacy_summary(m.privacy), "risk": rows_m,
                     "verdict": after_verdict,
                     # counts are of the images whose report the attacker holds, as in the risk rows
                     "drop": mitigation.compare(qv, qv_m, spec.attacker_pools, released * spec.report_coverage)})

    record = {
        "generator": f"relink report {__version__}",
        "record": decision_record(spec, judged, released),
        "threat_model": threat_model(es, spec, released, source, threat.declared),
        "verdict": judged,
        "headline": head,
        "sentences": sentences,
        "risk": random_rows,
        # the sentence on the attacker model that re-links the most (None for a panel of one)
        "panel": {"models": members, "worst": judged["level"], "size": len(members),
                  "sentence": _panel_sentence(members, spec, released)},
        "confident": confident_rec,
        "hard_negatives": {"available": with_hard, "note": hard_note,
                           "rows": hard.hard_rows(qv, frame, spec.ks, spec.min_cell) if with_hard else [],
                           "pools": list(aspec.pools)},
        "concentration": groups.breakdowns(qv, es.rows, es.labels(), views, spec.attacker_pools, spec.min_cell),
        "mitigation": {"runs": runs, "several_epsilons": len(runs) > 1,
                       "retrained_heads": mitigation.retrained_heads(retrained)},
        "recommendation": mitigation.recommendation(judged, all_rows, spec, released, runs,
                                                    lambda f: confident_section.high_at(confident_rec, f)),
        "risk_curve": {"rows": curve.risk_curve(es, spec.attacker_pools, released, spec.report_coverage, spec.n_boot,
                                                spec.ci),
                       "guide": curve.GUIDE},
        "methods": methods(aspec, spec),
        "settings": {"report": spec.record(), "audit": aspec.record()},
    }
    return record, pd.concat(frames, ignore_index=True) if len(frames) > 1 else frame


def _panel_sentence(members: list[dict[str, Any]], spec: ReportSpec, released: int) -> str | None:
    """The header's second sentence when an attacker model re-links more than the custodian's own."""
    found = attacker_panel.strongest(members, spec.attacker_pools[0]) if len(members) > 1 else None
    if found is None:
        return None
    member, row = found
    text = risk.sentence(row, released, spec.ci, spec.report_coverage)
    return (f"With {member['model']} (a model of the attacker panel) instead of the custodian's: "
            f"{text[:1].lower()}{text[1:]}")


def decision_record(spec: ReportSpec, judged: dict[str, Any], released: int) -> dict[str, Any]:
    """What a data-protection officer signs: the decision, the assumptions it rests on and the risk that remains.
    (The id, time, version and commit are added when the document is made: relink.report.schema.document.)"""
    pools = ", ".join(f"{p:,}" for p in spec.attacker_pools)
    return {
        "release_name": spec.release_name or "not named (--release-name)",
        "decision": judged["decision"],
        "assumptions": [
            f"The attacker holds the model (weights or an embedding service), the {released:,} released images and, "
            f"for a share {spec.report_coverage:g} of them, that image's own report among N = {pools} candidates.",
            "The released images resemble the audited ones (same model, same kind of cohort).",
            "The attacker ranks candidates by the model's cosine similarity; side information (age, sex, dates) "
            "that narrows a pool is not modelled beyond the declared N.",
            f"Thresholds: lift {spec.lift_elevated:g} / {spec.lift_high:g}, images re-linked beyond chance "
            f"{spec.excess_elevated:g} / {spec.excess_high:g} (elevated / high); intervals at {spec.ci:.0%}.",
        ],
        "residual_risk": ("Even a low verdict leaves the images that guessing re-links and those re-linked within the "
                          "upper interval bounds; it says nothing of attackers with smaller pools, other side "
                          "information, other models or other attacks."),
        "sign_off": ["Data custodian", "Data-protection officer"],
    }


def methods(aspec: AuditSpec, spec: ReportSpec) -> dict[str, str]:
    """The methods box: estimator, intervals, what the verdict means and what it does not."""
    return {
        "estimator": ("Exact expected Recall@K over random candidate pools: for each query the number of candidates "
                      "scoring above its truth is counted once over all audited pairs, and the chance that a random "
                      "pool of N holds fewer than K of them is hypergeometric, so the expectation over all possible "
                      "pools is computed exactly, not sampled. Ties with an identical embedding are broken at random."),
        "intervals": (f"{spec.ci:.0%} intervals that group each patient's pairs together (patient-clustered "
                      "variance): for recall and MRR an exact binomial (Clopper-Pearson) interval on the effective "
                      "number of queries after the design effect, for the median rank Woodruff's interval; paired "
                      "comparisons use a leave-one-patient-out jackknife on the same rows. A null simulation on "
                      "random embeddings showed these hold their coverage where the percentile bootstrap did not "
                      "(few hits). No interval is shown from fewer than two patients. Counts for the release are the "
                      "recall and its interval times M, assuming the released images resemble the audited ones."),
        "chance": ("Chance is what an attacker guessing at random achieves (K/N at the study level); lift is recall "
                   "divided by chance, so 1 means no better than guessing."),
        "hard_negatives": ("Pathology-matched pools draw every distractor from pairs with the same 14 CheXpert labels; "
                           "they are compared with random pools on exactly the queries they cover."),
        "verdict_means": ("The verdict grades how far the model lets an attacker, as declared above, beat guessing "
                          "when re-linking released images to their reports, by the rule printed with it."),
        "verdict_does_not": ("It is not a membership test, not the probability that a given patient is re-identified, "
                             "and it bounds nothing outside the declared threat model (other pools, side information, "
                             "other models or attacks)."),
        "disclosure": (f"Aggregates only: no identifier or report text is shown and no cell holds fewer than "
                       f"{spec.min_cell} pairs or patients. Both outputs were checked by relink's leak scanner before "
                       "they were written."),
    }
