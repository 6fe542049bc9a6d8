"""Per-example contrastive loss against a fixed negative bank (the sound DP loss).

Why a bank: with CLIP's in-batch InfoNCE one example's removal changes the *other* examples' clipped gradients
too, and the summed clipped gradient moves by more than the clip norm (measured 1.3-1.9x). Against a bank outside
the private set, pair i's loss depends only on pair i, so clipping bounds its influence by exactly the clip norm.

Rules the code keeps (each one was a silent failure with Opacus):

* the bank is projected with ``F.linear(bank, W.detach())`` under
  ``no_grad`` (:func:`project_bank`), never through the hooked ``nn.Linear``:
  Opacus would record the bank as extra "samples";
* the temperature is a fixed float, not a parameter: a raw ``nn.Parameter``
  in the private module makes Opacus fall back to functorch and fail;
* the loss has a ``reduction`` attribute and returns one value per sampled
  unit under ``reduction="none"`` (Opacus ghost clipping needs both).

Shapes: a *pair* batch is ``(B, d)``; a *patient* batch is ``(B, P, d)`` with
a ``(B, P)`` mask of real pairs (padding rows contribute nothing, so the
per-patient loss, and therefore gradient, is the sum over the patient's pairs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

REDUCTIONS = ("mean", "sum", "none")


class HeadPair(nn.Module):
    """The two projection heads as one module, the only thing Opacus sees (the encoders ran once, when the trunk
    features were cached): ``forward(image_trunk, text_trunk) -> (image_proj, text_proj)``, not normalised."""

    def __init__(self, image: nn.Linear, text: nn.Linear):
        super().__init__()
        self.image = image
        self.text = text

    def forward(self, image_trunk: torch.Tensor, text_trunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image(image_trunk), self.text(text_trunk)


def project_bank(linear: nn.Linear, trunk: torch.Tensor) -> torch.Tensor:
    """Unit-norm projections of bank trunk features, outside autograd and hooks."""
    with torch.no_grad():
        bias = None if linear.bias is None else linear.bias.detach()
        return F.normalize(F.linear(trunk, linear.weight.detach(), bias), dim=-1)


def pair_infonce(
    image_proj: torch.Tensor,
    text_proj: torch.Tensor,
    bank_image: torch.Tensor,
    bank_text: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Symmetric InfoNCE of each pair against the bank (its own text against the bank's texts, its own image
    against the bank's images, the mean of the two); shape ``image_proj.shape[:-1]``. The bank is a constant."""
    u = F.normalize(image_proj, dim=-1)
    v = F.normalize(text_proj, dim=-1)
    pos = (u * v).sum(-1, keepdim=True) / temperature
    i2t = torch.cat([pos, u @ bank_text.T / temperature], dim=-1)
    t2i = torch.cat([pos, v @ bank_image.T / temperature], dim=-1)
    # Cross-entropy with the positive at index 0, written out so that any
    # leading shape (pairs or patients x pairs) works.
    return 0.5 * ((torch.logsumexp(i2t, -1) - pos[..., 0]) + (torch.logsumexp(t2i, -1) - pos[..., 0]))


class BankInfoNCE(nn.Module):
    """Criterion ``(image_proj, text_proj, bank_image, bank_text[, mask]) -> loss`` (the bank as
    :func:`project_bank` gives it; with a ``mask`` a unit's loss is the sum over its real pairs; ``reduction``
    as in torch, ``none``: one value per unit)."""

    def __init__(self, temperature: float, reduction: str = "mean"):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.temperature = float(temperature)
        self.reduction = reduction

    def forward(self, image_proj, text_proj, bank_image, bank_text, mask=None) -> torch.Tensor:
        per_pair = pair_infonce(image_proj, text_proj, bank_image, bank_text, self.temperature)
        per_unit = per_pair if mask is None else (per_pair * mask).sum(-1)
        if self.reduction == "mean":
            return per_unit.mean()
        if self.reduction == "sum":
            return per_unit.sum()
        return per_unit


def in_batch_infonce(image_proj: torch.Tensor, text_proj: torch.Tensor, temperature: float) -> torch.Tensor:
    """CLIP's loss with in-batch negatives, per example (shape ``(B,)``): never for DP training (it breaks the
    sensitivity bound), only for the attacker of :mod:`relink.dp.retrain`, who owes no bound."""
    u = F.normalize(image_proj, dim=-1)
    v = F.normalize(text_proj, dim=-1)
    logits = u @ v.T / temperature
    target = torch.arange(len(u), device=u.device)
    return 0.5 * (F.cross_entropy(logits, target, reduction="none") + F.cross_entropy(logits.T, target, reduction="none"))
