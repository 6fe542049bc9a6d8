"""The DP-SGD mechanism for the two heads, wired through Opacus: one setup, one step at a time.

Only :class:`relink.dp.loss.HeadPair` trains. Each sampled unit (a pair, or a patient's pairs) has its own loss
against a fixed bank, so its gradient depends on that unit alone; Opacus clips it to ``clip_norm``, adds
``N(0, (sigma * clip_norm)^2)`` to the sum and divides by the expected batch size (Poisson schedule:
:func:`relink.dp.accounting.schedule`). An empty Poisson batch is a noise-only step, which is what the accountant
counts: skipping it would release the unchanged heads, an output the noisy step never produces.

Randomness: :func:`build` derives every generator from one ``seed`` (torch's global seed, the sampler's, the
noise generator's ``seed + 1``); :func:`relink.dp.train.noise_seed` decides whether it is secret or published.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import RelinkError
from . import accounting
from .accounting import quiet
from .loss import BankInfoNCE, HeadPair, project_bank
from .spec import GRAD_SAMPLE_MODES, MitigationSpec


def privacy_engine(accountant: str):
    """An Opacus ``PrivacyEngine`` with ``secure_mode=False``, knowingly (why: :func:`relink.dp.train.noise_seed`);
    its warning that secure mode is off is filtered (the run states its own release status instead)."""
    from opacus import PrivacyEngine

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"opacus\.privacy_engine")
        return PrivacyEngine(accountant=accounting.check_accountant(accountant), secure_mode=False)


@dataclass
class Setup:
    """Everything one training run holds; ``heads`` is the unwrapped module being trained."""

    heads: HeadPair
    model: nn.Module
    optimizer: Any
    criterion: Any
    loader: DataLoader
    bank_image: torch.Tensor
    bank_text: torch.Tensor
    engine: Any = None
    private: bool = True
    grad_sample_mode: str = "ghost"


def copy_linear(layer: nn.Linear) -> nn.Linear:
    new = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        new.weight.copy_(layer.weight.detach().float())
        if layer.bias is not None:
            new.bias.copy_(layer.bias.detach().float())
    return new


def build(dataset, bank: tuple[torch.Tensor, torch.Tensor], init, spec: MitigationSpec, seed: int, *,
          loss_reduction: str = "mean", poisson: bool = True) -> Setup:
    """Wire heads, optimizer, loss and loader; with ``spec.private`` through Opacus, sigma calibrated to
    ``spec.epsilon`` unless ``spec.noise_multiplier`` fixes it. ``loss_reduction`` and ``poisson=False`` exist for
    tests of the mechanism."""
    if spec.grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise RelinkError(f"--grad-sample-mode must be one of {', '.join(GRAD_SAMPLE_MODES)}")
    if spec.temperature is None:
        raise ValueError("the InfoNCE temperature must be fixed before training (MitigationSpec.temperature)")
    torch.manual_seed(seed)
    heads = HeadPair(copy_linear(init.image), copy_linear(init.text)).train()
    optimizer = torch.optim.Adam(heads.parameters(), lr=spec.lr)
    criterion = BankInfoNCE(spec.temperature, reduction=loss_reduction)
    loader = DataLoader(dataset, batch_size=spec.batch_size, shuffle=not spec.private,
                        generator=torch.Generator().manual_seed(seed))
    if not spec.private:
        return Setup(heads, heads, optimizer, criterion, loader, bank[0], bank[1], None, False, "none")
    engine = privacy_engine(spec.accountant)
    common = dict(module=heads, optimizer=optimizer, criterion=criterion, data_loader=loader,
                  max_grad_norm=spec.clip_norm, loss_reduction=loss_reduction, poisson_sampling=poisson,
                  grad_sample_mode=spec.grad_sample_mode, noise_generator=torch.Generator().manual_seed(seed + 1))
    rate = 1 / len(loader)
    try:
        with quiet(), accounting.numerics(rate):
            if spec.noise_multiplier is None:
                out = engine.make_private_with_epsilon(target_epsilon=spec.epsilon, target_delta=spec.delta,
                                                       epochs=spec.epochs, **common)
            else:
                out = engine.make_private(noise_multiplier=spec.noise_multiplier, **common)
    except (ValueError, RuntimeError, OverflowError, MemoryError) as exc:
        if spec.noise_multiplier is not None:
            raise
        raise RelinkError(f"no noise level reaches --epsilon {spec.epsilon:g} at --delta {spec.delta:g} with "
                          f"{accounting.steps_per_epoch(len(dataset), spec.batch_size) * spec.epochs} steps at rate "
                          f"{rate:.3g} ({spec.accountant.upper()}: {str(exc).splitlines()[0][:120]})") from None
    if spec.grad_sample_mode == "ghost":
        model, optimizer, criterion, loader = out
    else:
        model, optimizer, loader = out
    return Setup(heads, model, optimizer, criterion, loader, bank[0], bank[1], engine, True, spec.grad_sample_mode)


def batch_loss(setup: Setup, batch):
    """The batch's loss (an Opacus ghost-clipping tensor in ghost mode) for ``backward()``."""
    image, text, *rest = batch
    mask = rest[0] if rest else None
    bank_image = project_bank(setup.heads.image, setup.bank_image)
    bank_text = project_bank(setup.heads.text, setup.bank_text)
    image_proj, text_proj = setup.model(image, text)
    return setup.criterion(image_proj, text_proj, bank_image, bank_text, mask)


def noise_only_step(setup: Setup) -> None:
    """An empty Poisson batch: the optimizer adds noise to a zero gradient sum (and the accountant counts it);
    each ``.grad`` then holds the noise applied (over the expected batch size) until the next step."""
    setup.optimizer.zero_grad()
    for p in setup.heads.parameters():
        if setup.grad_sample_mode == "ghost":  # ghost clipping: the clipped sum lives in .grad
            p.grad = torch.zeros_like(p)
        else:  # per-sample modes: zero samples, so the clipped sum is zero
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
    setup.optimizer.step()


def train_step(setup: Setup, batch) -> float | None:
    """One optimizer step; returns the batch's mean loss (``None`` for an empty batch)."""
    if len(batch[0]) == 0:
        if setup.private:
            noise_only_step(setup)
        return None
    setup.optimizer.zero_grad()
    loss = batch_loss(setup, batch)
    with quiet():
        loss.backward()
    setup.optimizer.step()
    return float(loss.detach()) if hasattr(loss, "detach") else float(loss.item())
