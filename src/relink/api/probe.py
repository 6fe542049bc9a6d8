"""``relink.probe``: what embedding sets keep (linear probe, zero-shot AUROC, member gap), as one table.

Columns: ``utility`` (``linear_probe`` | ``zeroshot`` | ``member_gap``), ``embeddings`` (the set's name),
then each utility's own columns (:mod:`relink.utility`; the member gap's ``queries`` is ``label`` here, with
``metric = "recall"`` and ``matched_on``). ``model`` names a local model only by its weights (no path).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from ..options import Range, check_spec, one_of, option
from ..utility.probe import SPLITS, UNCERTAIN

FEATURES = ("projected", "trunk", "both")


@dataclass(frozen=True)
class ProbeSpec:
    """What ``relink probe`` measures, and how (every default here, once)."""

    features: str = option("both", flag="--features", parse=one_of(FEATURES), choices=FEATURES,
                           help="image features to probe: the projected embeddings, the trunk features, or both")
    zeroshot: bool = option(False, flag="--zeroshot", help="add zero-shot AUROC from label prompt pairs")
    member_gap: int = option(0, flag="--member-gap", check=Range(int, 0, 10_000_000), metavar="N",
                             help="add the member gap at pool N (0 = off)")
    split: str = option("auto", flag="--split", parse=one_of(SPLITS), choices=SPLITS, help="probe train/test split")
    uncertain: str = option("exclude", flag="--uncertain", parse=one_of(UNCERTAIN), choices=UNCERTAIN,
                            help="uncertain (-1) labels: left out, negative or positive")
    max_iter: int = option(5000, flag="--max-iter", check=Range(int, 1, 1_000_000), help="LogisticRegression max_iter")
    seed: int = option(0, flag="--seed", check=Range(int, 0, 2**32 - 1),
                       help="seed of the probe split and of the member gap's sampling and bootstrap")
    zeroshot_split: str | None = option("test", flag="--zeroshot-split", cli=False,
                                        help="rows the zero-shot AUROC is measured on (None: all)")
    nonmembers: str = option("test", flag="--nonmembers", cli=False, help="the member gap's non-member split")
    gap_seed: int | None = option(None, flag="--gap-seed", cli=False, help="the member gap's seed (default: seed)")
    gap_boot: int | None = option(None, flag="--gap-boot", cli=False,
                                  help="the member gap's bootstrap replicates (default: the audit's)")
    gap_fit: bool = option(False, flag="--gap-fit", cli=False,
                           help="take the largest pool the matched rows fill when it is smaller than member_gap "
                                "(default: refuse)")

    def __post_init__(self) -> None:
        check_spec(self)
        if self.member_gap == 1:
            raise RelinkError("--member-gap must be 0 (off) or a pool size of at least 2, got 1")

    @property
    def feature_kinds(self) -> tuple[str, ...]:
        return ("projected", "trunk") if self.features == "both" else (self.features,)


@dataclass(frozen=True)
class ProbeResult:
    """The utility table of every set, the settings used, and what was left out (``notes``)."""

    table: pd.DataFrame
    spec: ProbeSpec
    names: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def macro(self) -> pd.DataFrame:
        """The linear probe's macro rows (one per set and features)."""
        t = self.table
        return t[(t["utility"] == "linear_probe") & (t["label"] == "macro")]


def _trunk_key(es: EmbeddingSet) -> tuple:
    import hashlib

    import numpy as np

    head = np.ascontiguousarray(np.asarray(es.image_trunk[:64], dtype=np.float32))
    return len(es), hashlib.sha256(head.tobytes()).hexdigest()


def _member_gap(es: EmbeddingSet, name: str, spec: ProbeSpec) -> pd.DataFrame:
    """The member-gap rows of one set; a pool larger than its matched rows fill is refused unless ``gap_fit``."""
    from ..utility.membership import member_gap

    seed = spec.seed if spec.gap_seed is None else spec.gap_seed
    boot = {} if spec.gap_boot is None else {"n_boot": spec.gap_boot}
    g = member_gap(es, N=spec.member_gap, K=1, nonmembers=spec.nonmembers, random_state=seed, **boot)
    fillable = int(g["N"].min())
    if fillable < spec.member_gap and not spec.gap_fit:
        raise RelinkError(f"--member-gap {spec.member_gap} is larger than the pools the train and test rows of "
                          f"--embeddings {name} can fill (at most N={fillable} after matching patients); "
                          "give a smaller --member-gap")
    g = g.rename(columns={"queries": "label"}).assign(metric="recall", matched_on=g.attrs.get("matched_on"))
    g.insert(0, "utility", "member_gap")
    return g


def _text_head(es: EmbeddingSet, name: str, model, given, load):
    """The text head that made ``es``'s text rows (``given``, else its model's), checked to reproduce them."""
    from ..models.heads import check_reproduces, extract_heads

    if given is not None:
        head, label = given, f"the heads given for {name}"
    else:
        spec = es.meta.get("model") or model
        if not spec:
            raise RelinkError(f"{name}: meta.json names no model for --zeroshot; pass --model SPEC")
        head, label = extract_heads(load(spec).model).text, f"--model {spec}" if spec == model else f"model {spec!r}"
    check_reproduces(head, es, "text", label)
    return head


def probe(embeddings: Sequence[EmbeddingSet | str | os.PathLike], spec: ProbeSpec | None = None, *, model=None,
          text_heads: Sequence[Any] | None = None, names: Sequence[str] | None = None) -> ProbeResult:
    """Measure what each set keeps; sets may be given as folders.

    ``model``: the model whose text trunk encodes the zero-shot prompts (default: each set's own, named in
    its meta.json). ``text_heads``: per set, the text head that made its text rows (``None``: its model's),
    e.g. DP heads over the same trunk. A trunk shared with an earlier set is probed once (a note says so).
    """
    from ..embeddings import load, public_model_name
    from ..utility.probe import probe_embeddings
    from ..utility.zeroshot import zeroshot_auroc

    spec = spec or ProbeSpec()
    feats = spec.feature_kinds
    sets = [es if isinstance(es, EmbeddingSet) else load(es, require_trunk="trunk" in feats) for es in embeddings]
    names = tuple(names or _names(sets))
    heads = list(text_heads or [None] * len(sets))
    models: dict = {}

    def load_model(m):
        if not isinstance(m, (str, os.PathLike)):
            return m
        if m not in models:
            from ..models import load_model as load_spec

            models[m] = load_spec(str(m))
        return models[m]

    frames, seen, notes = [], {}, []
    for es, name, given in zip(sets, names, heads):
        gap = _member_gap(es, name, spec) if spec.member_gap else None
        mine = tuple(f for f in feats if f != "trunk" or _trunk_key(es) not in seen)
        if "trunk" in feats and "trunk" not in mine:
            notes.append(f"{name}: trunk features as in {seen[_trunk_key(es)]}, probed once")
        if "trunk" in mine:
            seen[_trunk_key(es)] = name
        t = probe_embeddings(es, mine, split=spec.split, uncertain=spec.uncertain, max_iter=spec.max_iter,
                             random_state=spec.seed)
        t.insert(0, "utility", "linear_probe")
        frames.append(t.assign(embeddings=name))
        if spec.zeroshot:
            head = _text_head(es, name, model, given, load_model)
            prompts = load_model(model if model is not None else es.meta.get("model"))
            z = zeroshot_auroc(es, prompts, text_head=head, split=spec.zeroshot_split, uncertain=spec.uncertain)
            z.insert(0, "utility", "zeroshot")
            frames.append(z.assign(embeddings=name))
        if gap is not None:
            frames.append(gap.assign(embeddings=name))
    table = pd.concat(frames, ignore_index=True)
    fingerprints = {name: es.meta.get("weights_fingerprint") for es, name in zip(sets, names)}
    table["model"] = [public_model_name(m, fingerprints.get(n)) for m, n in zip(table["model"], table["embeddings"])]
    return ProbeResult(table, spec, names, tuple(notes))


def _names(sets: Sequence[EmbeddingSet]) -> list[str]:
    """Short names for the sets: the folder name, or its last three parts where names repeat."""
    from pathlib import Path

    paths = [Path(es.path) if es.path is not None else Path(f"set-{i + 1}") for i, es in enumerate(sets)]
    names = [p.name for p in paths]
    return [n if names.count(n) == 1 else "/".join(p.parts[-3:]) for n, p in zip(names, paths)]
