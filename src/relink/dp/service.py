"""The one mitigation service: what `relink mitigate` and the paper both call.

* :func:`resolve` fills what a :class:`relink.dp.spec.MitigationSpec` leaves
  to the model (the temperature: ``1/exp(logit_scale)``), once;
* :func:`mitigate` trains new heads for one spec on the ``train`` rows of an
  EmbeddingSet (the private rows) against a negative bank (default: its
  ``validate`` rows), after checking that the model's heads reproduce the
  set and that the bank lies outside the private and the evaluated rows;
  with ``out`` it writes the result folder (:func:`write`);
* :func:`sweep` yields ``(epsilon, heads, report)`` for several epsilons
  (``None`` = non-private) on the same data: the paper's privacy-utility
  study. Each run is its own (epsilon, delta) guarantee; the runs together
  are a study, not one release.

The result folder (``--out``): ``heads.safetensors``, ``privacy.json`` (the
report, with the spec and provenance), ``checkpoint/`` (an ordinary
open_clip checkpoint with the new heads; its ``relink.json`` carries the
privacy summary) and ``embeddings/<name>/`` (each given set re-projected,
nothing re-encoded). Every one of them states ``for_release`` and, when
false, why (:attr:`MitigationSpec.release_note`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from .apply import heads_fingerprint
from .heads_data import check_bank_outside, default_bank, private_split
from .spec import MitigationSpec
from .train import fit_heads

#: CLIP's initial temperature, for a model without a ``logit_scale``.
FALLBACK_TEMPERATURE = 0.07
SUMMARY_FIELDS = ("private", "accountant", "epsilon", "rdp_epsilon", "delta", "noise_multiplier", "clip_norm",
                  "privacy_unit", "heads_fingerprint", "noise_seed", "for_release", "release_note")


@dataclass
class Mitigation:
    """One run's result: the heads, the privacy report, the resolved spec and the model they belong to."""

    heads: Any
    report: dict[str, Any]
    spec: MitigationSpec
    model: Any  # relink.models.LoadedModel
    sets: list[tuple[str, EmbeddingSet]]  # (name, set) to re-project when written

    @property
    def summary(self) -> dict[str, Any]:
        """The fields every derived output (checkpoint, re-projected sets) carries."""
        return {k: self.report.get(k) for k in SUMMARY_FIELDS}


def resolve(spec: MitigationSpec, model) -> MitigationSpec:
    """``spec`` with its temperature fixed: given, or the model's own ``1/exp(logit_scale)``."""
    if spec.temperature is not None:
        return spec
    scale = getattr(getattr(model, "model", model), "logit_scale", None)
    temperature = float(1.0 / math.exp(float(scale.detach()))) if scale is not None else FALLBACK_TEMPERATURE
    return spec.but(temperature=temperature)


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


def _check_reproduces(init, es: EmbeddingSet, label: str, rows: int = 16) -> None:
    """The model's heads must turn the set's trunk features into its stored embeddings."""
    from ..models.heads import project

    if init.image.in_features != es.image_trunk.shape[1]:
        return  # fit_heads names the dimension mismatch
    n = min(rows, len(es))
    again = project(init.image, np.asarray(es.image_trunk[:n]))
    stored = es.unit("image", np.arange(n))
    if not np.allclose(again, stored, atol=1e-3):
        raise RelinkError(f"the heads of {label} do not reproduce {es.where}/image.npy from its trunk features: "
                          "wrong --model?")


def mitigate(embeddings: EmbeddingSet, spec: MitigationSpec, *, bank: EmbeddingSet | None = None, model=None,
             apply: Sequence[EmbeddingSet] = (), names: Sequence[str] | None = None,
             out: str | os.PathLike | None = None, progress: bool | None = None) -> Mitigation:
    """Retrain the heads of ``model`` on ``embeddings``' ``train`` rows per ``spec``.

    ``bank``: the negative bank (default: ``embeddings``' ``validate``
    rows). ``model``: a LoadedModel, a model spec, or ``None`` for the one
    named in ``embeddings.meta``. ``apply``: more sets to re-project.
    ``names``: folder names of ``embeddings`` and each ``apply`` set under
    ``embeddings/`` (default: their folder names). ``out``: write the result
    folder there (claim it first with :func:`relink.io.claim_output`).
    """
    from ..models.heads import extract_heads

    train = private_split(embeddings, "train")
    rest = embeddings.subset(embeddings.rows["split"].to_numpy() != "train")
    bank_name = _name(bank) if bank is not None else f"the validate split of {_name(embeddings)}"
    if bank is None:
        bank = default_bank(embeddings)
        rest = rest.subset(rest.rows["split"].to_numpy() != "validate")
    evaluated = [(f"the non-train rows of {embeddings.where}", rest)] + [(s.where, s) for s in apply]
    check_bank_outside(bank, evaluated)
    loaded, label = _load(model, embeddings)
    init = extract_heads(loaded.model)
    _check_reproduces(init, embeddings, label)
    spec = resolve(spec, loaded)
    heads, report = fit_heads(train, bank, init, spec, progress=progress)
    report.update(model=loaded.spec, embeddings=_name(embeddings), bank=bank_name,
                  heads_fingerprint=heads_fingerprint(heads), spec=spec.record())
    sets = [embeddings, *apply]
    result = Mitigation(heads, report, spec, loaded, list(zip(_unique(names or [_name(s) for s in sets]), sets)))
    if out is not None:
        write(result, out)
    return result


def _name(es: EmbeddingSet) -> str:
    return Path(es.path).name if es.path is not None else "embeddings"


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for base in names:
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return out


def write(result: Mitigation, out: str | os.PathLike) -> Path:
    """Write the result folder atomically, marked as `relink mitigate`'s own output."""
    from .. import embeddings as emb
    from ..io import atomic_dir, json_safe, mark_output, write_json
    from ..models.registry import weights_fingerprint
    from ..provenance import stamp
    from .apply import apply_heads, save_heads, write_checkpoint

    out = Path(out)
    summary = result.summary
    provenance = stamp(command="mitigate", base_weights_fingerprint=result.model.fingerprint)
    with atomic_dir(out) as tmp:
        save_heads(result.heads, tmp / "heads.safetensors")
        write_json(tmp / "privacy.json", {**result.report, "provenance": provenance})
        write_checkpoint(result.model, result.heads, tmp / "checkpoint",
                         extra=json_safe({"relink_heads": summary, "base_model": result.model.spec}))
        fp = weights_fingerprint(result.model.model)  # the model now carries the new heads
        for name, es in result.sets:
            extra = {"heads": summary, "model": str(out / "checkpoint"), "weights_fingerprint": fp,
                     "for_release": summary["for_release"], "release_note": summary["release_note"]}
            emb.save(apply_heads(es, result.heads, json_safe(extra)), tmp / "embeddings" / name)
        mark_output(tmp, "mitigate")
    return out


def sweep(train: EmbeddingSet, bank: EmbeddingSet, spec: MitigationSpec, epsilons: Iterable[float | None], model,
          evaluated: Sequence[tuple[str, EmbeddingSet]] = (),
          progress: bool | None = None) -> Iterator[tuple[float | None, Any, dict[str, Any]]]:
    """``(epsilon, heads, report)`` per epsilon (``None``: the same training without DP).

    ``train``: the private rows; ``bank``: the negative bank; ``spec``: the
    shared settings (its ``epsilon`` and ``private`` are set per run; a
    non-private run takes no epsilon or delta); ``model``: the LoadedModel
    whose heads start each run (and whose temperature fills a ``None``);
    ``evaluated``: ``(name, set)`` pairs the bank must stay outside of.
    """
    from ..models.heads import extract_heads

    check_bank_outside(bank, list(evaluated))
    init = extract_heads(model.model)
    spec = resolve(spec, model)
    for eps in epsilons:
        run = spec.but(epsilon=eps, private=True) if eps is not None else spec.but(
            epsilon=None, delta=None, private=False, noise_multiplier=None)
        heads, report = fit_heads(train, bank, init, run, progress=progress)
        yield eps, heads, report
