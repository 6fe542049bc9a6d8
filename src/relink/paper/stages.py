"""The expensive, cached stages every result stands on, under ``artifacts/<profile>`` unless told otherwise.

``cohort-<role>/`` (generated, or a manifest pointing at the real dataset), ``ladder`` (trained for the
synthetic profiles; real profiles name public models) and ``embeddings/<role>/<rung>`` (every rung in one
pass per cohort). Training and embedding resume after an interruption. Keys never run a stage:
:func:`rung_ids` is what the embeddings depend on, known without loading or training a model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cohort import patient_resplit, read_cohort, write_cohort
from ..provenance import REPO_ROOT
from ..io import canonical
from .cache import cached, digest, source_hash
from .profiles import Profile


@dataclass(frozen=True)
class RungSpec:
    """One model of the ladder: display name, position, and how to load it."""

    name: str
    index: int
    spec: str
    load_kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def slug(self) -> str:
        return f"rung{self.index}"


@dataclass
class Context:
    """A profile's artifact folder and the stages built so far in this process."""

    profile: Profile
    root: Path
    progress: bool = True
    memo: dict[str, Any] = field(default_factory=dict)


def default_root(profile: Profile) -> Path:
    return Path(os.environ.get("RELINK_ARTIFACTS", REPO_ROOT / "artifacts")) / profile.name


def _memo(ctx: Context, name: str, build):
    if name not in ctx.memo:
        ctx.memo[name] = build()
    return ctx.memo[name]


def cohorts(ctx: Context) -> dict[str, Path | None]:
    """Role (``internal``, ``external``) -> cohort folder or manifest (``None``: no external cohort)."""
    def build() -> dict[str, Path | None]:
        return {role: None if plan is None else cached(ctx.root, f"cohort-{role}", plan[0], plan[1]) / plan[2]
                for role, plan in _cohort_plans(ctx).items()}

    return _memo(ctx, "cohorts", build)


def _cohort_plans(ctx: Context) -> dict[str, tuple[dict[str, Any], Any, str] | None]:
    """Role -> (cache key, builder, name of the cohort inside the artifact), or ``None``; reads nothing."""
    p = ctx.profile
    if not p.credentialed:
        from ..synth import generate_cohort

        plans: dict[str, tuple[dict[str, Any], Any, str] | None] = {}
        for role, patients, seed, splits in (
            ("internal", p.internal_patients, p.synth_seed, p.splits),
            ("external", p.external_patients, p.synth_seed + 1, None),
        ):
            key = {"stage": f"synthetic-{role}", "patients": patients, "seed": seed, "size": p.image_size,
                   "splits": splits, "source": source_hash(("synth",)),
                   **({"study_counts": list(p.study_counts)} if p.study_counts else {})}
            plans[role] = (key, lambda tmp, role=role, patients=patients, seed=seed, splits=splits: generate_cohort(
                tmp / "cohort", patients, seed, size=p.image_size, site=role, split_fractions=splits,
                workers=os.cpu_count() or 1, progress=ctx.progress, study_count_p=p.study_counts or None), "cohort")
        return plans
    data = dict(p.data)
    from ..loaders.chexpert_plus import load_chexpert_plus
    from ..loaders.mimic_cxr import load_mimic_cxr

    def real(role: str, loader, **paths: str) -> tuple[dict[str, Any], Any, str]:
        # The study's held-out set is larger than MIMIC-CXR's official test split: "study" rebuilds a
        # patient-disjoint split of that size (the validation bank a tenth of it); see the appendix.
        resplit = role == "internal" and p.split == "study"
        key = {"stage": f"real-{role}", "loader": loader.__name__, "paths": paths, "source": source_hash(("loaders",)),
               "split": [p.heldout_pairs, p.split_seed] if resplit else "official"}

        def build(tmp: Path) -> None:
            result = loader(**paths, progress=ctx.progress)
            frame = result.frame
            if resplit:
                frame = patient_resplit(frame, p.heldout_pairs, max(1, p.heldout_pairs // 10), p.split_seed)
            write_cohort(frame, tmp / "cohort.parquet", image_root=result.image_root)

        return key, build, "cohort.parquet"

    if p.name == "mimic":
        internal = real("internal", load_mimic_cxr, images=data["mimic_images"], reports=data["mimic_reports"])
        external = real("external", load_chexpert_plus, root=data["chexpert_plus_root"]) if "chexpert_plus_root" in data else None
        return {"internal": internal, "external": external}
    return {"internal": real("internal", load_chexpert_plus, root=data["chexpert_plus_root"]), "external": None}


def key_id(key: dict[str, Any]) -> str:
    """The id an artifact built under ``key`` will have (:func:`relink.paper.cache.artifact_id`), known before it is built."""
    return digest(canonical(key))


def cohort_ids(ctx: Context) -> dict[str, str | None]:
    return {role: None if plan is None else key_id(plan[0]) for role, plan in _cohort_plans(ctx).items()}


def ladder(ctx: Context) -> list[RungSpec]:
    """The profile's models in ladder order (trained here for synthetic profiles)."""
    return _memo(ctx, "ladder", lambda: _ladder(ctx))


def _ladder(ctx: Context) -> list[RungSpec]:
    p = ctx.profile
    if p.ladder:
        return [_custom_rung(text, i + 1) for i, text in enumerate(p.ladder)]
    if p.credentialed:
        from ..models.ladder import resolve_ladder

        return [RungSpec(r.name, i + 1, r.spec, tuple(sorted(dict(r.load_kwargs).items())))
                for i, r in enumerate(resolve_ladder(p.name))]
    from ..models.ladder_store import read_ladder
    from ..models.ladder_train import train_ladder

    internal = cohorts(ctx)["internal"]
    path = cached(ctx.root, "ladder", _ladder_key(ctx), resumable=True, build=lambda folder: train_ladder(
        internal, p.train_config, folder, epochs=p.train_epochs, batch_size=p.train_batch_size, lr=p.train_lr,
        seed=p.train_seed, rungs=p.train_rungs, max_pairs=p.train_max_pairs or None, progress=ctx.progress))
    info = read_ladder(path)
    return [RungSpec(f"{r['name']} ({int(r['step'])} steps)", i + 1, r["path"]) for i, r in enumerate(info["rungs"])]


def _ladder_key(ctx: Context) -> dict[str, Any]:
    """The trained ladder's cache key (synthetic profiles), from the profile alone."""
    p = ctx.profile
    return {"stage": "ladder", "cohort": cohort_ids(ctx)["internal"], "config": p.train_config, "epochs": p.train_epochs,
            "batch_size": p.train_batch_size, "lr": p.train_lr, "rungs": p.train_rungs, "seed": p.train_seed,
            "source": source_hash(("models",)), **({"max_pairs": p.train_max_pairs} if p.train_max_pairs else {})}


def _custom_rung(text: str, index: int) -> RungSpec:
    """A rung from ``--set ladder=`` / ``RELINK_LADDER``: ``SPEC`` or ``NAME=SPEC``; a local path must exist."""
    from ..models.ladder import Rung, resolve_spec

    name, sep, spec = text.partition("=")
    if not sep:
        name, spec = "", text
    spec = resolve_spec(Rung(name or f"rung-{index}", spec.strip(), "auto", "user-supplied"))
    label = name.strip() or (Path(spec).name if os.path.isdir(spec) else spec)
    return RungSpec(label, index, spec)


def load(rung: RungSpec):
    from ..models import load_model

    return load_model(rung.spec, **dict(rung.load_kwargs))


def rung_ids(ctx: Context) -> dict[str, Any]:
    """What the ladder's embeddings are a function of: the ladder's key or specs, the cohorts, the code."""
    p = ctx.profile
    trained = not p.ladder and not p.credentialed
    # a trained ladder is named by its key (its rungs' display names hold step counts known only after training)
    rungs = [[i + 1] for i in range(p.train_rungs)] if trained else [
        (r.name, r.spec, r.load_kwargs) for r in ladder(ctx)]
    return {"rungs": rungs, "ladder": key_id(_ladder_key(ctx)) if trained else None,
            "cohorts": cohort_ids(ctx), "embed": {"batch_size": p.embed_batch_size, "source": source_hash(("embed", "models")),
                                                  **({"fit_max_pairs": p.fit_max_pairs} if p.fit_max_pairs else {})}}


def role_embeddings(ctx: Context, role: str) -> dict[int, Path] | None:
    """Every rung's EmbeddingSet of ``role``'s cohort, made in one pass (``None``: no such cohort). The
    strongest rung embeds the whole internal cohort (the DP step needs its training and validation splits;
    with ``fit_max_pairs``, a seeded subset of the training split), the others only its evaluation split."""
    def build() -> dict[int, Path] | None:
        from ..embed import EmbedJob, embed_many

        source = cohorts(ctx)[role]
        if source is None:
            return None
        rungs, cohort = ladder(ctx), read_cohort(source)
        eval_rows = (cohort.frame["split"] == ctx.profile.eval_split).to_numpy()
        cap = ctx.profile.fit_max_pairs if role == "internal" else 0
        top = _capped_train(cohort.frame["split"].to_numpy(), cap, ctx.profile.train_seed) if cap else None
        rows = {r.index: top if r.index == len(rungs) else eval_rows if role == "internal" else None for r in rungs}
        ids = rung_ids(ctx)
        key = {"stage": "embeddings", "role": role, "rungs": ids["rungs"], "weights": [_local_stamp(r.spec) for r in rungs],
               "ladder": ids["ladder"], "cohort": cohort_ids(ctx)[role],
               "eval_split": ctx.profile.eval_split if role == "internal" else None, "embed": ids["embed"],
               **({"fit_max_pairs": cap} if cap else {})}
        path = cached(ctx.root / "embeddings", role, key, resumable=True, build=lambda folder: embed_many(
            cohort, [EmbedJob(load(r) if r.load_kwargs else r.spec, folder / r.slug, rows[r.index]) for r in rungs],
            batch_size=ctx.profile.embed_batch_size, progress=ctx.progress))
        return {r.index: path / r.slug for r in rungs}

    return _memo(ctx, f"emb:{role}", build)


def _capped_train(split, cap: int, seed: int):
    """Every row outside the training split, and a seeded subset of at most ``cap`` of its rows (a mask)."""
    import numpy as np

    train = np.flatnonzero(split == "train")
    keep = split != "train"
    keep[np.random.default_rng([seed, 24]).choice(train, size=min(cap, len(train)), replace=False)] = True
    return keep


def embeddings(ctx: Context, rung: RungSpec, role: str) -> Path | None:
    """EmbeddingSet folder of ``role``'s cohort under ``rung`` (see :func:`role_embeddings`)."""
    sets = role_embeddings(ctx, role)
    return None if sets is None else sets[rung.index]


def _local_stamp(spec: str) -> list[Any] | None:
    """Size and modification time of the local files a spec names: a checkpoint replaced under the same path
    is a cache miss."""
    target = spec[len("local-dir:"):] if spec.startswith("local-dir:") else spec
    if not os.path.exists(target):
        target = spec.partition(":")[2]
    if not target or not os.path.exists(target):
        return None
    files = sorted(Path(target).rglob("*")) if os.path.isdir(target) else [Path(target)]
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()]
