"""The attacker who re-trains the heads: non-private projection heads learned on a public paired set.

DP heads do nothing against an attacker who holds the released trunks and a public set of image-report pairs and
trains heads of their own without DP. :func:`retrain_heads` plays that attacker: a random start and shuffling from
``spec.seed`` alone (no noise: deterministic, the seed may be published), CLIP's in-batch InfoNCE, only the public
set seen (:func:`check_apart`). The heads carry no privacy guarantee, and the record says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from ..options import Range, Spec, check_spec, option
from .heads_data import _shared, require_trunk
from .loss import HeadPair, in_batch_infonce
from .spec import NO_GUARANTEE, SEED_MAX
from .start import random_heads
from .steps import copy_linear

ATTACKER = "heads trained without differential privacy on a public paired set over the same trunk"


@dataclass(frozen=True)
class RetrainSpec(Spec):
    """How the attacker trains its heads (every default here, once)."""

    epochs: int = option(30, flag="--epochs", check=Range(int, 1, 10_000), help="passes over the public pairs")
    batch_size: int = option(256, flag="--batch-size", check=Range(int, 2, 1_000_000),
                             help="pairs per batch (in-batch negatives: the batch is the contrast set)")
    lr: float = option(1e-2, flag="--lr", check=Range(float, 0, 10, low_open=True), help="Adam learning rate")
    temperature: float = option(0.07, flag="--temperature", check=Range(float, 0, 10, low_open=True),
                                help="fixed InfoNCE temperature (CLIP's initial 0.07)")
    seed: int = option(0, flag="--seed", check=Range(int, 0, SEED_MAX),
                       help="seed of the random start and the shuffling (no noise: the run is deterministic)")

    def __post_init__(self) -> None:
        check_spec(self)


def check_apart(public: EmbeddingSet, target: EmbeddingSet) -> None:
    """Refuse a public set that shares a pair or a patient with the target, or comes from another trunk."""
    require_trunk(public, "--public")
    require_trunk(target, "--target")
    if len(public) < 2:
        raise RelinkError(f"--public {public.where}: at least 2 pairs are needed to train heads, got {len(public)}")
    pairs, patients = _shared(public, target, "pair_id"), _shared(public, target, "patient_id")
    if pairs or patients:
        raise RelinkError(f"--public {public.where} shares {pairs} pair(s) and {patients} patient(s) with --target "
                          f"{target.where}: the attacker's public set must lie outside the target rows")
    dims = lambda es: (es.image_trunk.shape[1], es.text_trunk.shape[1])  # noqa: E731
    if dims(public) != dims(target):
        raise RelinkError(f"--public {public.where}: trunk features of dims {dims(public)}, --target's are "
                          f"{dims(target)}: not the same trunk")
    a, b = public.meta.get("weights_fingerprint"), target.meta.get("weights_fingerprint")
    if a and b and a != b:
        raise RelinkError(f"--public {public.where} was embedded by other weights than --target (weights "
                          f"fingerprints differ): not the same trunk")


def _template(target: EmbeddingSet):
    """Head shapes for the target's trunk and embedding dims (no bias, like CLIP's projections)."""
    from ..models.heads import Heads

    e = target.image.shape[1]
    return Heads(image=nn.Linear(target.image_trunk.shape[1], e, bias=False),
                 text=nn.Linear(target.text_trunk.shape[1], e, bias=False))


def retrain_heads(public: EmbeddingSet, target: EmbeddingSet, spec: RetrainSpec | None = None,
                  progress: bool | None = None) -> tuple[Any, dict[str, Any]]:
    """``(heads, record)``: heads trained on ``public``'s pairs only, shaped for ``target``'s trunk and space; the
    record holds the settings, the public set's size and cohorts and the release status, no path or identifier."""
    from tqdm.auto import tqdm

    spec = spec or RetrainSpec()
    check_apart(public, target)
    start = random_heads(_template(target), spec.seed)
    heads = HeadPair(copy_linear(start.image), copy_linear(start.text)).train()
    torch.manual_seed(spec.seed)
    image = torch.from_numpy(np.array(public.image_trunk, dtype=np.float32))  # a copy: the set may be memory-mapped
    text = torch.from_numpy(np.array(public.text_trunk, dtype=np.float32))
    batch = min(spec.batch_size, len(image))
    optimizer = torch.optim.Adam(heads.parameters(), lr=spec.lr)
    order = torch.Generator().manual_seed(spec.seed)
    losses = []
    for _ in tqdm(range(spec.epochs), desc="attacker heads", leave=False,
                  disable=None if progress or progress is None else True):
        perm, epoch = torch.randperm(len(image), generator=order), []
        for lo in range(0, len(perm), batch):
            idx = perm[lo:lo + batch]
            if len(idx) < 2:  # one pair has no negative
                continue
            optimizer.zero_grad()
            loss = in_batch_infonce(*heads(image[idx], text[idx]), spec.temperature).mean()
            loss.backward()
            optimizer.step()
            epoch.append(float(loss.detach()))
        losses.append(float(np.mean(epoch)))
    out = type(start)(image=copy_linear(heads.image), text=copy_linear(heads.text))
    record = {"attacker": ATTACKER, "spec": spec.record(), "start": "random-init",
              "loss": "symmetric InfoNCE with in-batch negatives", "public_pairs": len(public),
              "public_cohorts": sorted(map(str, public.rows["cohort"].unique())), "public_losses": losses,
              "private": False, "for_release": False, "release_note": NO_GUARANTEE}
    return out, record
