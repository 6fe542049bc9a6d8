"""The ladder of models a profile audits, from general to chest-radiograph-specific.

For real cohorts the ladder is data, :data:`REAL_LADDER`, each rung a :func:`relink.models.load_model`
spec. Why the specs read as they do:

* ``biomedclip`` needs ``transformers``; offline, the Hugging Face cache must also hold the BiomedBERT
  config and tokenizer its ``text_cfg`` names (open_clip reads them even when the weights are local).
* ``chexzero`` saves OpenAI CLIP's state dict, whose keys are open_clip ``CLIP``'s own (no mapping);
  the architecture must be ``ViT-B-32-quickgelu`` (plain ``ViT-B-32`` loads and silently computes other
  embeddings), and its preprocessing is its own (:data:`CHEXZERO_PREPROCESS`).
* ``mimic-ft`` is an ``open_clip_train`` checkpoint (``{"state_dict": ...}``, read by ``NAME:FILE``;
  ``MIMIC_FT_MODEL`` is the ``--model`` it was trained with).

The ``synthetic`` and ``smoke`` ladders are trained by ``relink train`` and passed as overrides. An
override ``name -> spec`` replaces a rung's spec (dropping its ``load_kwargs``), ``name -> None`` drops
it, a new name appends one. ``${VAR}`` / ``${VAR:-default}`` are read from the environment when the
ladder is resolved.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

from ..errors import RelinkError

# CheXzero: Normalize((101.48761,)*3, (83.43944,)*3) on 0-255 pixels, after a
# longest-side resize with zero padding (its data_process.preprocess) and a
# bicubic resize to 224.
CHEXZERO_PREPROCESS: Mapping[str, Any] = MappingProxyType({
    "image_mean": (101.48761 / 255,) * 3,
    "image_std": (83.43944 / 255,) * 3,
    "image_interpolation": "bicubic",
    "image_resize_mode": "longest",
})


@dataclass(frozen=True)
class Rung:
    """One model of a ladder: a ``load_model`` spec (``${VAR}`` until resolved), its head layout
    ``family``, the Python modules it ``requires`` and the ``load_kwargs`` that go with the spec."""

    name: str
    spec: str
    family: str
    description: str
    requires: tuple[str, ...] = ()
    load_kwargs: Mapping[str, Any] = field(default_factory=dict)


REAL_LADDER: tuple[Rung, ...] = (
    Rung("clip", "ViT-B-16:openai", "vit+text-transformer", "general-domain CLIP (OpenAI ViT-B/16)"),
    Rung(
        "biomedclip",
        "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
        "timm+hf-text",
        "biomedical CLIP trained on PubMed figure-caption pairs (PMC-15M)",
        requires=("transformers",),
    ),
    Rung(
        "chexzero",
        "ViT-B-32-quickgelu:${CHEXZERO_CKPT}",
        "vit+text-transformer",
        "CheXzero: OpenAI ViT-B/32 fine-tuned on MIMIC-CXR images and report impressions",
        load_kwargs=CHEXZERO_PREPROCESS,
    ),
    Rung(
        "mimic-ft",
        "${MIMIC_FT_MODEL:-ViT-B-16-quickgelu}:${MIMIC_FT_CKPT}",
        "vit+text-transformer",
        "fine-tuned on the MIMIC-CXR training split with open_clip's training entry point",
    ),
)

LADDERS: dict[str, tuple[Rung, ...]] = {
    "mimic": REAL_LADDER,
    "chexpert-plus": REAL_LADDER,
    "synthetic": (),  # filled by relink train through overrides
    "smoke": (),
}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(rung: Rung, env: Mapping[str, str]) -> str:
    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name) or default
        if not value:
            raise RelinkError(f"ladder rung {rung.name!r} needs ${name} (spec {rung.spec!r}): set it, or override or drop the rung")
        return value

    return _VAR.sub(sub, rung.spec)


def _check_local(rung: Rung, spec: str) -> None:
    """A spec naming a local file or folder must point at one that exists."""
    if spec.startswith("hf-hub:"):
        return
    target = spec[len("local-dir:"):] if spec.startswith("local-dir:") else spec.partition(":")[2] or spec
    looks_local = spec.startswith("local-dir:") or os.sep in target or target.endswith((".pt", ".pth", ".bin", ".safetensors"))
    if looks_local and not os.path.exists(target):
        raise RelinkError(f"ladder rung {rung.name!r}: {target} does not exist (spec {spec!r})")


def resolve_ladder(profile: str, overrides: Mapping[str, str | None] | None = None, env: Mapping[str, str] | None = None) -> list[Rung]:
    """The rungs of ``profile`` with ``overrides`` applied and ``${VAR}`` expanded, in ladder order."""
    if profile not in LADDERS:
        raise RelinkError(f"unknown ladder profile {profile!r}; choose one of {', '.join(LADDERS)}")
    env = os.environ if env is None else env
    overrides = dict(overrides or {})
    rungs: list[Rung] = []
    for rung in LADDERS[profile]:
        if rung.name in overrides:
            spec = overrides.pop(rung.name)
            if spec is None:
                continue
            rung = replace(rung, spec=spec, load_kwargs={})
        rungs.append(rung)
    for name, spec in overrides.items():
        if spec is not None:
            rungs.append(Rung(name, spec, "auto", f"user-supplied model {spec}"))
    if not rungs:
        hint = " (relink train writes the synthetic ladder; pass its checkpoint folders)" if not LADDERS[profile] else ""
        raise RelinkError(f"the {profile!r} ladder is empty{hint}")
    resolved = []
    for rung in rungs:
        missing = [m for m in rung.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise RelinkError(f"ladder rung {rung.name!r} needs {', '.join(missing)} (pip install 'relink[hf]')")
        spec = _expand(rung, env)
        _check_local(rung, spec)
        resolved.append(replace(rung, spec=spec))
    return resolved


def resolve_spec(rung: Rung, env: Mapping[str, str] | None = None) -> str:
    """One rung's spec with ``${VAR}`` expanded and a local file or folder checked to exist."""
    spec = _expand(rung, os.environ if env is None else env)
    _check_local(rung, spec)
    return spec
