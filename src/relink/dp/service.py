"""The one mitigation service: what `relink mitigate`, :func:`relink.api.mitigate.mitigate` and the paper call.

:func:`mitigate` writes nothing (:func:`relink.dp.release.write` does). A sweep over epsilon is one call per
epsilon with the same spec otherwise: every run starts from the same heads with the same fixed temperature, so
the run without DP is the control of each DP run; each run is its own (epsilon, delta) guarantee.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence


from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from ..models import trained_on
from . import release
from .apply import heads_fingerprint
from .heads_data import check_bank_outside, default_bank, private_split
from .spec import MitigationSpec
from .start import starting_heads, trunk_record
from .train import fit_heads

@dataclass(frozen=True)
class Mitigation:
    """One run's result: the heads, the privacy report, the spec, the model they belong to, the sets they
    re-project when written (``(name, set)``), and what a reader should know (``notes``)."""

    heads: Any
    report: Mapping[str, Any]
    spec: MitigationSpec
    model: Any  # relink.models.LoadedModel
    sets: tuple[tuple[str, EmbeddingSet], ...]
    notes: tuple[str, ...] = ()


def _load(model, es: EmbeddingSet):
    """``(LoadedModel, how messages name it)`` from a LoadedModel, a spec, or ``es``'s meta.json."""
    from ..models import load_model

    if model is not None and not isinstance(model, (str, os.PathLike)):
        return model, f"model {model.spec!r}"
    if model is not None:
        return load_model(str(model)), f"--model {model}"
    named = es.meta.get("model")
    if not named:
        raise RelinkError(f"{es.where}/meta.json names no model; pass --model SPEC")
    return load_model(str(named)), f"model {named!r} (named in {es.where}/meta.json)"


def mitigate(embeddings: EmbeddingSet, spec: MitigationSpec, *, bank: EmbeddingSet | None = None, model=None,
             init: str | None = None, trunk_trained_on: str | None = None, apply: Sequence[EmbeddingSet] = (),
             names: Sequence[str] | None = None, bank_name: str | None = None,
             progress: bool | None = None) -> Mitigation:
    """Train new heads for ``model`` on ``embeddings``' ``train`` rows per ``spec``, after checking that the
    model's heads reproduce the set and that the bank lies outside the private and the evaluated rows.

    ``bank``: default ``embeddings``' ``validate`` rows. ``model``: a LoadedModel, a spec, or ``None`` for the one
    ``embeddings.meta`` names. ``init``: a model spec whose heads start training (default: a random start from
    ``spec.init_seed``). ``trunk_trained_on``: a ``public:<name>`` declaration for a trunk whose weights record
    nothing. ``apply``: more sets to re-project; ``names``: the folder names of ``embeddings`` and each of them.
    """
    from ..models.heads import check_reproduces, extract_heads

    train = private_split(embeddings, "train")
    rest = embeddings.subset(embeddings.rows["split"].to_numpy() != "train")
    bank_name = bank_name or (_name(bank) if bank is not None else f"the validate split of {_name(embeddings)}")
    if bank is None:
        bank = default_bank(embeddings)
        rest = rest.subset(rest.rows["split"].to_numpy() != "validate")
    _check_apply(embeddings, apply)
    evaluated = [(f"the non-train rows of {embeddings.where}", rest)] + [(f"--apply {s.where}", s) for s in apply]
    check_bank_outside(bank, evaluated)
    loaded, label = _load(model, embeddings)
    own = extract_heads(loaded.model)
    check_reproduces(own.image, embeddings, "image", label)
    heads0, start = starting_heads(own, init, spec.init_seed)
    trunk = trunk_record(loaded.spec, trunk_trained_on)
    heads, report = fit_heads(train, bank, heads0, spec, progress=progress)
    report.update(heads_fingerprint=heads_fingerprint(heads), spec=spec.record(), bank=bank_name,
                  **describe(spec, start, trunk, train, bank_name))
    sets = [embeddings, *apply]
    notes = [report["bank_note"]] + ([] if report["for_release"] else [report["release_reason"]])
    return Mitigation(heads, report, spec, loaded, tuple(zip(_unique(names or [_name(s) for s in sets]), sets)),
                      tuple(notes))


def describe(spec: MitigationSpec, start: str, trunk: str, train: EmbeddingSet, bank: str) -> dict[str, Any]:
    """The release fields of a run's report: what it was trained on, its release status and why, the bank's."""
    rows = trained_on.private(train.rows["pair_id"])
    ok, why = release.status(spec, start, trunk, rows)
    return {"trained_on": {"start": start, "trunk": trunk}, "private_rows": rows, "for_release": ok,
            "release_reason": why, "release_note": None if ok else why, "bank_note": release.bank_note(bank)}


def _check_apply(embeddings: EmbeddingSet, apply: Sequence[EmbeddingSet]) -> None:
    mine = set(embeddings.rows["pair_id"].astype(str))
    for s in apply:
        if mine & set(s.rows["pair_id"].astype(str)):
            raise RelinkError(f"--apply {s.where}: shares pairs with --embeddings (which is re-projected already); "
                              "give --apply only sets outside it")


def _name(es: EmbeddingSet) -> str:
    return Path(es.path).name if es.path is not None else "embeddings"


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for base in names:
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return out
