"""Trunk features: what a tower computes before its projection head (see :mod:`relink.models.heads`).

Contract: in eval mode ``extract_heads(m).image(encode_image_trunk(m, x))`` equals
``m.encode_image(x)`` (unnormalised) to float rounding, and likewise for text. The projection is
blanked for one forward pass and restored, so the model's own forward code runs.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .heads import ProjectionSlot, locate_heads, owner_of, resolve

__all__ = ["encode_image_trunk", "encode_text_trunk", "encode_trunks_and_heads"]


@contextlib.contextmanager
def _blanked(model, slot: ProjectionSlot) -> Iterator[None]:
    """Switch one projection off for the duration of a forward pass (restored even on error)."""
    owner, attr = owner_of(model, slot.path)
    original = owner._parameters.get(attr) if attr in owner._parameters else owner._modules.get(attr)
    if slot.blank == "none":
        stand_in = None
    elif slot.blank == "identity":
        stand_in = nn.Identity()
    else:  # used functionally through .weight/.bias: an exact identity map
        w = original.weight
        stand_in = nn.Linear(slot.in_features, slot.in_features, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            stand_in.weight.copy_(torch.eye(slot.in_features, device=w.device, dtype=w.dtype))
            stand_in.bias.zero_()
        stand_in.requires_grad_(False)
    setattr(owner, attr, stand_in)
    try:
        yield
    finally:
        setattr(owner, attr, original)


def _project(model, slot: ProjectionSlot, trunk: torch.Tensor) -> torch.Tensor:
    obj = resolve(model, slot.path)
    return trunk @ obj if slot.kind == "matrix" else obj(trunk)


def encode_image_trunk(model, images: torch.Tensor) -> torch.Tensor:
    """Pre-projection image features (n, trunk_dim); grad mode is the caller's."""
    slot = locate_heads(model).image
    with _blanked(model, slot):
        return model.encode_image(images)


def encode_text_trunk(model, tokens: torch.Tensor) -> torch.Tensor:
    """Pre-projection text features (n, trunk_dim); grad mode is the caller's."""
    slot = locate_heads(model).text
    with _blanked(model, slot):
        return model.encode_text(tokens)


def encode_trunks_and_heads(model, images: torch.Tensor, tokens: torch.Tensor):
    """One pass per tower: ``(image_trunk, image_proj, text_trunk, text_proj)``, projections unnormalised."""
    loc = locate_heads(model)
    with _blanked(model, loc.image):
        image_trunk = model.encode_image(images)
    with _blanked(model, loc.text):
        text_trunk = model.encode_text(tokens)
    return image_trunk, _project(model, loc.image, image_trunk), text_trunk, _project(model, loc.text, text_trunk)
