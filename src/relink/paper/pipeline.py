"""Result tables of the paper, each a cached artifact under ``<artifacts>/results/<name>``.

=================  ============================================================
``cohorts``        ``summary.parquet`` (cohort, role, split, pairs, studies,
                   patients), ``prevalence.parquet`` (cohort, role, label,
                   positive/uncertain/negative/missing fractions),
                   ``examples.json`` + images (synthetic profiles only)
``audit``          ``audit.parquet``: every rung x cohort, both directions,
                   study and patient level, random pools, with intervals
``hard_negatives`` ``hard_negatives.parquet``: random vs pathology-matched vs
                   positive-set-matched pools, every rung, study level
``dp``             ``effects.parquet`` (state before | dp | non_private,
                   epsilon, per cohort), ``sweep.parquet`` (privacy per
                   epsilon), ``privacy.json`` (the headline run), the headline
                   heads, the mitigated checkpoint and re-projected sets
``utility``        ``utility.parquet`` (state, features, metric, value, CI)
=================  ============================================================

The internal evaluation split must fill every requested pool (a profile that
asks for N = 10,000 gets a real pool of 10,000 or an error); the external
cohort, often smaller, is evaluated on the pools it can fill.

Metric tables carry :data:`relink.tables.METRIC_COLUMNS` plus ``rung``,
``pool`` (``"100"`` ... ``"full"``) and ``role``. Each folder has
``provenance.json``. Keys cover the profile fields a table depends on, the
upstream artifact ids and the relink source it runs, so a prose-only change
rebuilds nothing and a code change rebuilds what it touches.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..embeddings import EmbeddingSet
from ..embeddings import load as load_embeddings
from ..io import write_json
from ..labels import CHEXPERT_LABELS
from ..provenance import stamp
from ..tables import write_table
from .cache import cached, digest, source_hash, stored_key
from .profiles import Profile
from .stages import Context, RungSpec, cohort_ids, cohorts, default_root, embeddings, ladder, load

log = logging.getLogger(__name__)
RESULTS = ("cohorts", "audit", "hard_negatives", "dp", "utility")


def _rung_ids(ctx: Context) -> dict[str, Any]:
    """What the ladder's embeddings are a function of, known without loading a model: the
    ladder (its training key, or the public specs), the cohorts and the embedding code."""
    p = ctx.profile
    rungs = [(r.name, r.spec if p.credentialed else r.index, r.load_kwargs) for r in ladder(ctx)]
    trained = stored_key(ctx.root / "ladder") if not p.credentialed else None
    return {"rungs": rungs, "ladder": digest(trained) if trained else None, "cohorts": cohort_ids(ctx),
            "embed": {"batch_size": p.embed_batch_size, "source": source_hash(("embed", "models"))}}


def _finish(tmp: Path, ctx: Context, name: str, tables: dict[str, pd.DataFrame], extra: dict[str, Any] | None = None) -> None:
    prov = stamp(profile=ctx.profile.name, result=name, cohorts=cohort_ids(ctx), **(extra or {}))
    for file, frame in tables.items():
        write_table(frame.reset_index(drop=True), tmp / file, prov)
    write_json(tmp / "provenance.json", prov)


def _eval_set(ctx: Context, rung: RungSpec, role: str) -> EmbeddingSet | None:
    path = embeddings(ctx, rung, role)
    if path is None:
        return None
    es = load_embeddings(path)
    if role == "internal":
        es = es.split(ctx.profile.eval_split)
    return es


def _label_table(frame: pd.DataFrame, rung: RungSpec, role: str, pools) -> pd.DataFrame:
    """Add ``rung``, ``role`` and ``pool`` (the requested pool size as text, or ``full``)."""
    frame = frame.copy()
    frame.insert(0, "rung", rung.index)
    frame.insert(1, "role", role)
    finite = {int(p) for p in pools if p != "full"}
    is_finite = frame["N"].isin(finite) & (frame["metric"] == "recall")
    frame.insert(2, "pool", np.where(is_finite, frame["N"].astype(str), "full"))
    return frame


def _audit_rows(ctx: Context, negatives: tuple[str, ...], levels: tuple[str, ...], labelled_only: bool = False) -> pd.DataFrame:
    """Audit every rung on every cohort. ``labelled_only`` drops pairs whose report carries no
    label at all (they belong to no pathology group), for every kind of negatives alike so that
    random and matched pools are compared on the same queries; the count is the column
    ``unlabelled_excluded``."""
    from ..retrieval.audit import audit

    p = ctx.profile
    frames = []
    for rung in ladder(ctx):
        for role in ("internal", "external"):
            es = _eval_set(ctx, rung, role)
            if es is None:
                continue
            unlabelled = np.isnan(es.labels()).all(axis=1)
            if labelled_only:
                es = es.subset(~unlabelled)
            cohort = str(es.rows["cohort"].iloc[0])
            table = audit(es, pools=p.pools, ks=p.ks, directions=("image_to_report", "report_to_image"), levels=levels,
                          negatives=negatives, n_boot=p.n_boot, random_state=p.audit_seed, model=rung.name,
                          cohort=cohort, pools_clip=role == "external")
            table = _label_table(table, rung, role, p.pools)
            if labelled_only:
                table["unlabelled_excluded"] = int(unlabelled.sum())
            frames.append(table)
    return pd.concat(frames, ignore_index=True)


def build_cohorts(ctx: Context, tmp: Path) -> None:
    from ..cohort import read_cohort

    summary, prevalence, examples = [], [], []
    for role, path in cohorts(ctx).items():
        if path is None:
            continue
        c = read_cohort(path)
        f = c.frame
        name = str(f["cohort"].iloc[0])
        for split, part in f.groupby("split", sort=True):
            summary.append({"cohort": name, "role": role, "split": split, "pairs": len(part),
                            "studies": part["study_id"].nunique(), "patients": part["patient_id"].nunique()})
        labels = c.labels()
        for j, label in enumerate(CHEXPERT_LABELS):
            col = labels[:, j]
            prevalence.append({"cohort": name, "role": role, "label": label, "positive": float(np.mean(col == 1)),
                               "uncertain": float(np.mean(col == -1)), "negative": float(np.mean(col == 0)),
                               "missing": float(np.mean(np.isnan(col)))})
        if not ctx.profile.credentialed:
            # A deterministic handful of test pairs with at least one positive finding.
            positive = np.flatnonzero((np.nan_to_num(labels[:, 1:], nan=0) == 1).any(axis=1))
            for k, i in enumerate(positive[:: max(1, len(positive) // 3)][:3]):
                target = f"example-{role}-{k}{Path(f['image_path'].iat[i]).suffix}"
                (tmp / target).write_bytes(c.image_file(int(i)).read_bytes())
                examples.append({"cohort": name, "image": target, "report": str(f["report"].iat[i])})
    _finish(tmp, ctx, "cohorts", {"summary.parquet": pd.DataFrame(summary), "prevalence.parquet": pd.DataFrame(prevalence)})
    if examples:
        write_json(tmp / "examples.json", examples)


def build_audit(ctx: Context, tmp: Path) -> None:
    table = _audit_rows(ctx, ("random",), ("study", "patient"))
    _finish(tmp, ctx, "audit", {"audit.parquet": table}, {"ladder": [r.name for r in ladder(ctx)]})


def build_hard_negatives(ctx: Context, tmp: Path) -> None:
    table = _audit_rows(ctx, ("random", "pathology_matched", "positive_set_matched"), ("study",), labelled_only=True)
    _finish(tmp, ctx, "hard_negatives", {"hard_negatives.parquet": table})


def _headline_sets(ctx: Context) -> tuple[RungSpec, EmbeddingSet, dict[str, EmbeddingSet]]:
    """The strongest rung, its whole internal set (with trunks), and the sets to evaluate by role."""
    rung = ladder(ctx)[-1]
    full = load_embeddings(embeddings(ctx, rung, "internal"), require_trunk=True)
    sets = {"internal": full.split(ctx.profile.eval_split)}
    ext = embeddings(ctx, rung, "external")
    if ext is not None:
        sets["external"] = load_embeddings(ext, require_trunk=True)
    return rung, full, sets


def _recall_rows(ctx: Context, rung: RungSpec, sets: dict[str, EmbeddingSet], state: str, epsilon: float | None) -> pd.DataFrame:
    from ..retrieval.audit import audit

    p = ctx.profile
    frames = []
    for role, es in sets.items():
        table = audit(es, pools=p.pools, ks=(1,), directions=("image_to_report",), levels=("study",),
                      negatives=("random",), n_boot=p.n_boot, random_state=p.audit_seed, model=rung.name,
                      cohort=str(es.rows["cohort"].iloc[0]), pools_clip=role == "external")
        table = _label_table(table, rung, role, p.pools)
        table = table[table["metric"] == "recall"]
        frames.append(table.assign(state=state, epsilon=np.nan if epsilon is None else float(epsilon)))
    return pd.concat(frames, ignore_index=True)


PUBLIC_PRIVACY_FIELDS = ("epsilon", "target_epsilon", "delta", "accountant", "prv_epsilon", "rdp_epsilon",
                         "noise_multiplier", "clip_norm", "sample_rate", "expected_batch_size", "epochs", "steps",
                         "privacy_unit", "n_units", "n_bank", "lr", "temperature", "grad_sample_mode", "seed", "private")


def build_dp(ctx: Context, tmp: Path) -> None:
    from ..dp.apply import apply_heads, save_heads, write_checkpoint
    from ..dp.train import fit_heads
    from ..embeddings import save as save_embeddings
    from ..models.heads import extract_heads

    p = ctx.profile
    rung, full, sets = _headline_sets(ctx)
    loaded = load(rung)
    init = extract_heads(loaded.model)
    train, bank = full.split("train"), full.split("validate")
    frames = [_recall_rows(ctx, rung, sets, "before", None)]
    sweep, headline = [], None
    epsilons = sorted({e for e in p.epsilons if e is not None} | {p.epsilon}) + ([None] if None in p.epsilons else [])
    for eps in epsilons:
        private = eps is not None
        heads, report = fit_heads(train, bank, init, epsilon=eps, delta=p.delta, accountant=p.accountant,
                                  clip_norm=p.dp_clip_norm, epochs=p.dp_epochs, batch_size=p.dp_batch_size, lr=p.dp_lr,
                                  temperature=p.dp_temperature, random_state=p.dp_seed, private=private,
                                  progress=ctx.progress)
        after = {role: apply_heads(es, heads) for role, es in sets.items()}
        frames.append(_recall_rows(ctx, rung, after, "dp" if private else "non_private", eps))
        public = {k: report.get(k) for k in PUBLIC_PRIVACY_FIELDS}
        sweep.append({"setting": f"ε = {eps:g}" if private else "no DP", **public})
        if private and eps == p.epsilon:
            headline = (heads, public)
        if not private:
            save_embeddings(apply_heads(full, heads), tmp / "non-private-internal")
    heads, public = headline
    save_heads(heads, tmp / "heads.safetensors")
    save_embeddings(apply_heads(full, heads), tmp / "mitigated-internal")
    write_checkpoint(loaded, heads, tmp / "checkpoint", extra={"privacy": public})
    write_json(tmp / "privacy.json", public)
    sweep_frame = pd.DataFrame(sweep)
    _finish(tmp, ctx, "dp", {"effects.parquet": pd.concat(frames, ignore_index=True), "sweep.parquet": sweep_frame},
            {"model": rung.name, "privacy": public})


def _utility_rows(ctx: Context, es: EmbeddingSet, loaded, text_head, state: str) -> list[dict[str, Any]]:
    from ..utility.membership import member_gap
    from ..utility.probe import probe_embeddings
    from ..utility.zeroshot import zeroshot_auroc

    p = ctx.profile
    rows = []
    probe = probe_embeddings(es, features=("projected", "trunk") if state == "before" else ("projected",),
                             random_state=p.probe_seed)
    macro = probe[probe["label"] == "macro"]
    for _, r in macro.iterrows():
        rows.append({"state": state, "features": r["features"], "metric": "linear_probe_macro_auroc",
                     "value": float(r["value"]), "ci_low": np.nan, "ci_high": np.nan, "n_labels": int(r["n_labels"])})
    zs = zeroshot_auroc(es, loaded, text_head=text_head, split=p.eval_split)
    zm = zs[zs["label"] == "macro"].iloc[0]
    rows.append({"state": state, "features": "projected", "metric": "zero_shot_macro_auroc", "value": float(zm["value"]),
                 "ci_low": np.nan, "ci_high": np.nan, "n_labels": int(zm.get("n_labels", np.nan))})
    n_gap = min(p.n_target, int((es.rows["split"] == "train").sum()), int((es.rows["split"] == p.eval_split).sum()))
    gap = member_gap(es, N=n_gap, K=1, members="train", nonmembers=p.eval_split, n_boot=p.n_boot, random_state=p.audit_seed)
    for _, r in gap.iterrows():
        metric = "member_gap" if r["queries"] == "gap" else f"recall_{r['queries']}"
        rows.append({"state": state, "features": "projected", "metric": metric, "value": float(r["value"]),
                     "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]), "n_labels": np.nan})
    return rows


def build_utility(ctx: Context, tmp: Path, dp_path: Path) -> None:
    from ..dp.apply import load_heads
    from ..models.heads import extract_heads

    rung, full, _ = _headline_sets(ctx)
    loaded = load(rung)
    rows = _utility_rows(ctx, full, loaded, extract_heads(loaded.model).text, "before")
    heads = load_heads(dp_path / "heads.safetensors")
    rows += _utility_rows(ctx, load_embeddings(dp_path / "mitigated-internal"), loaded, heads.text, "dp")
    _finish(tmp, ctx, "utility", {"utility.parquet": pd.DataFrame(rows)}, {"model": rung.name})


def _key(ctx: Context, name: str, parts: tuple[str, ...], fields: tuple[str, ...], upstream: dict[str, Any]) -> dict[str, Any]:
    p = ctx.profile.as_dict()
    return {"result": name, "profile": {f: p[f] for f in fields}, "source": source_hash(parts), **upstream}


AUDIT_FIELDS = ("eval_split", "pools", "ks", "n_boot", "audit_seed")
DP_FIELDS = AUDIT_FIELDS + ("epsilon", "delta", "accountant", "epsilons", "dp_epochs", "dp_batch_size", "dp_lr",
                            "dp_clip_norm", "dp_temperature", "dp_seed")


def build_results(profile: Profile, needed: list[str], artifacts_root: str | os.PathLike | None = None,
                  quiet: bool = False) -> dict[str, Path]:
    """Build (or reuse) the named result tables; returns name -> folder, plus ``_root``."""
    root = Path(artifacts_root) if artifacts_root else default_root(profile)
    ctx = Context(profile, root, progress=not quiet)
    results_root = root / "results"
    out: dict[str, Path] = {"_root": root}
    order = [n for n in RESULTS if n in set(needed) | ({"dp"} if "utility" in needed else set())]
    for name in order:
        if name == "cohorts":
            key = _key(ctx, name, ("paper",), ("eval_split", "credentialed"), {"cohorts": cohort_ids(ctx)})
            build: Callable[[Path], None] = lambda tmp: build_cohorts(ctx, tmp)
        elif name in ("audit", "hard_negatives"):
            key = _key(ctx, name, ("retrieval", "paper/pipeline.py"), AUDIT_FIELDS, {"rungs": _rung_ids(ctx)})
            build = (lambda tmp: build_audit(ctx, tmp)) if name == "audit" else (lambda tmp: build_hard_negatives(ctx, tmp))
        elif name == "dp":
            key = _key(ctx, name, ("dp", "retrieval", "models", "paper/pipeline.py"), DP_FIELDS, {"rungs": _rung_ids(ctx)})
            build = lambda tmp: build_dp(ctx, tmp)
        else:
            dp_id = digest(json.loads((out["dp"] / ".relink-key.json").read_text()))
            key = _key(ctx, name, ("utility", "retrieval", "models", "paper/pipeline.py"),
                       AUDIT_FIELDS + ("probe_seed", "epsilon"), {"rungs": _rung_ids(ctx), "dp": dp_id})
            build = lambda tmp: build_utility(ctx, tmp, out["dp"])
        out[name] = cached(results_root, name, key, build)
    return out
