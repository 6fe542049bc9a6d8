"""Train the two projection heads, privately (Opacus DP-SGD) or not, on cached trunk features.

The mechanism (what the accountant analyses, and what the tests check):

* only the heads train: the private module is :class:`relink.dp.loss.HeadPair`
  (two ``nn.Linear``); the encoders are not in the graph;
* each sampled unit (a pair, or a patient's pairs) has its own loss against
  a fixed negative bank (:class:`relink.dp.loss.BankInfoNCE`), so its
  gradient depends on that unit alone; Opacus clips each unit's gradient to
  ``clip_norm``, adds Gaussian noise ``N(0, (sigma * clip_norm)^2)`` to the
  sum and divides by the expected batch size;
* Poisson sampling with rate ``q = 1 / ceil(n / batch_size)`` for
  ``epochs * ceil(n / batch_size)`` steps; sigma from
  ``make_private_with_epsilon`` with the named accountant;
* an empty Poisson batch is not a silent skip: it is a noise-only step (zero
  gradient sum plus noise), which is what the accountant counts. Skipping it
  would release the unchanged heads, an output the noisy step never produces.

Loss values on the private data (``training_losses``) are NOT covered by the
guarantee and are marked so; ``bank_losses`` (the heads' loss on the public
bank) are post-processing of private outputs and safe to publish.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from . import DEFAULTS, accounting
from .heads_data import bank_tensors, check_disjoint, make_dataset
from .loss import BankInfoNCE, HeadPair, in_batch_infonce, project_bank

GRAD_SAMPLE_MODES = ("ghost", "hooks", "functorch", "ew")
# Opacus's advice to use secure_mode (we seed for reproducibility), and torch's note that the
# backward hooks fire on outputs because trunk features need no gradient: expected, not news.
# PRV also bounds its domain with RDP, whose "largest alpha" note is about that bound only.
QUIET = (".*Secure RNG turned off.*", ".*Full backward hook is firing.*", ".*Optimal order is the largest alpha.*")


@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings():
        for msg in QUIET:
            warnings.filterwarnings("ignore", message=msg)
        yield


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


def _copy_linear(layer: nn.Linear) -> nn.Linear:
    new = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        new.weight.copy_(layer.weight.detach().float())
        if layer.bias is not None:
            new.bias.copy_(layer.bias.detach().float())
    return new


def build(dataset, bank: tuple[torch.Tensor, torch.Tensor], init, *, private: bool = True,
          epsilon: float | None = None, delta: float | None = None, noise_multiplier: float | None = None,
          accountant: str = "prv", clip_norm: float = 1.0, epochs: int = DEFAULTS["epochs"],
          batch_size: int = DEFAULTS["batch_size"], lr: float = DEFAULTS["lr"],
          temperature: float = DEFAULTS["temperature"], grad_sample_mode: str = "ghost",
          loss_reduction: str = "mean", poisson: bool = True, random_state: int = 0) -> Setup:
    """Wire heads, optimizer, loss and loader; with ``private`` through Opacus.

    Pass ``epsilon`` (sigma from ``make_private_with_epsilon``) or, for tests,
    ``noise_multiplier`` directly (``make_private``).
    """
    from opacus import PrivacyEngine

    if grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise RelinkError(f"grad_sample_mode must be one of {', '.join(GRAD_SAMPLE_MODES)}, got {grad_sample_mode!r}")
    torch.manual_seed(random_state)
    heads = HeadPair(_copy_linear(init.image), _copy_linear(init.text)).train()
    optimizer = torch.optim.Adam(heads.parameters(), lr=lr)
    criterion = BankInfoNCE(temperature, reduction=loss_reduction)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=not private,
                        generator=torch.Generator().manual_seed(random_state))
    if not private:
        return Setup(heads, heads, optimizer, criterion, loader, bank[0], bank[1], None, False, "none")
    with quiet():
        engine = PrivacyEngine(accountant=accounting.check_accountant(accountant))
    common = dict(module=heads, optimizer=optimizer, criterion=criterion, data_loader=loader, max_grad_norm=clip_norm,
                  loss_reduction=loss_reduction, poisson_sampling=poisson, grad_sample_mode=grad_sample_mode,
                  noise_generator=torch.Generator().manual_seed(random_state + 1))
    with quiet():
        if noise_multiplier is None:
            out = engine.make_private_with_epsilon(target_epsilon=epsilon, target_delta=delta, epochs=epochs, **common)
        else:
            out = engine.make_private(noise_multiplier=noise_multiplier, **common)
    if grad_sample_mode == "ghost":
        model, optimizer, criterion, loader = out
    else:
        model, optimizer, loader = out
    return Setup(heads, model, optimizer, criterion, loader, bank[0], bank[1], engine, True, grad_sample_mode)


def batch_loss(setup: Setup, batch):
    """The batch's loss (an Opacus ghost-clipping tensor in ghost mode) for ``backward()``."""
    image, text, *rest = batch
    mask = rest[0] if rest else None
    bank_image = project_bank(setup.heads.image, setup.bank_image)
    bank_text = project_bank(setup.heads.text, setup.bank_text)
    image_proj, text_proj = setup.model(image, text)
    return setup.criterion(image_proj, text_proj, bank_image, bank_text, mask)


def _noise_only_step(setup: Setup) -> None:
    """An empty Poisson batch: the optimizer adds noise to a zero gradient sum."""
    for p in setup.heads.parameters():
        if setup.grad_sample_mode == "ghost":
            p.grad = torch.zeros_like(p)
        else:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
    setup.optimizer.step()
    setup.optimizer.zero_grad()


def train_step(setup: Setup, batch) -> float | None:
    """One optimizer step; returns the batch's mean loss (``None`` for an empty batch)."""
    if len(batch[0]) == 0:
        if setup.private:
            _noise_only_step(setup)
        return None
    setup.optimizer.zero_grad()
    loss = batch_loss(setup, batch)
    with quiet():
        loss.backward()
    setup.optimizer.step()
    return float(loss.detach()) if hasattr(loss, "detach") else float(loss.item())


def privatised_gradient(setup: Setup, batch) -> list[torch.Tensor]:
    """The gradient the optimizer would apply for ``batch`` (clipped, noised, scaled), without stepping.

    For tests of the mechanism: with ``noise_multiplier=0`` and
    ``loss_reduction="sum"`` it is the sum of the clipped per-unit gradients.
    """
    setup.optimizer.zero_grad()
    with quiet():
        batch_loss(setup, batch).backward()
    if setup.private:
        setup.optimizer.pre_step()
    grads = [p.grad.detach().clone() for p in setup.heads.parameters()]
    setup.optimizer.zero_grad()
    return grads


def bank_loss(heads: HeadPair, bank: tuple[torch.Tensor, torch.Tensor], temperature: float, limit: int = 4096) -> float:
    """Mean in-bank InfoNCE of the heads on public bank pairs (safe to publish)."""
    with torch.no_grad():
        image = project_bank(heads.image, bank[0][:limit])
        text = project_bank(heads.text, bank[1][:limit])
        return float(in_batch_infonce(image, text, temperature).mean())


def _n_pairs(dataset) -> int:
    return int((dataset.index >= 0).sum()) if hasattr(dataset, "index") else len(dataset)


def fit_heads(train: EmbeddingSet, bank: EmbeddingSet, init, epsilon: float | None = None, delta: float | None = None,
              accountant: str = "prv", clip_norm: float = 1.0, epochs: int = DEFAULTS["epochs"],
              batch_size: int = DEFAULTS["batch_size"], lr: float = DEFAULTS["lr"],
              temperature: float = DEFAULTS["temperature"], grad_sample_mode: str = "ghost", random_state: int = 0,
              private: bool = True, privacy_unit: str = "pair", bank_size: int | None = None,
              noise_multiplier: float | None = None, progress: bool | None = None):
    """Train new projection heads on ``train``'s trunk features; return ``(heads, privacy_report)``.

    ``train``: the private rows (all of them are used; select the split
    first). ``bank``: public negatives with trunk features, disjoint from
    ``train`` (checked). ``init``: the model's heads (``Heads(image, text)``,
    two ``nn.Linear``); the result has the same type. With ``private`` the
    run is (epsilon, delta)-DP per ``privacy_unit`` under ``accountant``;
    ``noise_multiplier`` overrides the sigma search (the report then gives
    the epsilon it spends). ``bank_size`` keeps a fixed random subset of the
    bank. The report is JSON-ready (non-finite numbers as ``None``).
    """
    from tqdm.auto import tqdm

    check_disjoint(train, bank, privacy_unit)
    dataset = make_dataset(train, privacy_unit)
    n_units = len(dataset)
    if private:
        accounting.check_accountant(accountant)
        if noise_multiplier is None:
            if epsilon is None or delta is None:
                raise RelinkError("private training needs --epsilon and --delta (or --non-private)")
            accounting.check_budget(epsilon, delta, n_units)
        elif delta is None or not 0 < delta < 1:
            raise RelinkError(f"--delta must lie in (0, 1), got {delta}")
        if not clip_norm > 0:
            raise RelinkError(f"--clip-norm must be > 0, got {clip_norm}")
    if init.image.in_features != train.image_trunk.shape[1] or init.text.in_features != train.text_trunk.shape[1]:
        raise RelinkError(
            f"the heads take ({init.image.in_features}, {init.text.in_features}) features but the trunk features have "
            f"({train.image_trunk.shape[1]}, {train.text_trunk.shape[1]}): heads of another model?"
        )
    sample_rate, planned_steps = accounting.schedule(n_units, batch_size, epochs)
    bank_t = bank_tensors(bank, bank_size, random_state)
    setup = build(dataset, bank_t, init, private=private, epsilon=epsilon, delta=delta, noise_multiplier=noise_multiplier,
                  accountant=accountant, clip_norm=clip_norm, epochs=epochs, batch_size=batch_size, lr=lr,
                  temperature=temperature, grad_sample_mode=grad_sample_mode, random_state=random_state)
    losses, bank_losses, steps, empty = [], [], 0, 0
    bar = tqdm(total=epochs * len(setup.loader), desc="private heads" if private else "heads",
               disable=None if progress is None else not progress, leave=False)
    for _ in range(epochs):
        epoch = []
        for batch in setup.loader:
            value = train_step(setup, batch)
            steps += 1
            empty += value is None
            if value is not None:
                epoch.append(value)
            bar.update(1)
        losses.append(float(np.mean(epoch)) if epoch else None)
        bank_losses.append(bank_loss(setup.heads, bank_t, temperature))
    bar.close()
    heads = type(init)(image=_copy_linear(setup.heads.image), text=_copy_linear(setup.heads.text))
    report = {
        "private": bool(private), "privacy_unit": privacy_unit, "accountant": accountant if private else None,
        "target_epsilon": epsilon if private else None, "delta": delta if private else None,
        "clip_norm": clip_norm if private else None, "sample_rate": sample_rate, "expected_batch_size": n_units * sample_rate,
        "epochs": epochs, "steps": steps, "planned_steps": planned_steps, "empty_batches": empty,
        "n_units": n_units, "n_pairs": _n_pairs(dataset), "n_bank": len(bank_t[0]), "lr": lr, "optimizer": "adam",
        "temperature": temperature, "grad_sample_mode": setup.grad_sample_mode, "seed": random_state,
        "loss": "symmetric InfoNCE against a fixed negative bank",
        "training_losses": losses,
        "training_losses_note": "mean loss on the private data per epoch: NOT covered by the guarantee, do not publish",
        "bank_losses": bank_losses,
    }
    if private:
        sigma = float(setup.optimizer.noise_multiplier)
        with quiet():
            spent = float(setup.engine.get_epsilon(delta))  # the accountant that tracked the run
        eps = {a: spent if a == accountant else accounting.epsilon_for(sigma, sample_rate, steps, delta, a)
               for a in accounting.ACCOUNTANTS}
        report.update(noise_multiplier=sigma, epsilon=spent, prv_epsilon=eps["prv"], rdp_epsilon=eps["rdp"],
                      accountant_steps=int(sum(h[2] for h in setup.engine.accountant.history)))
    else:
        report.update(noise_multiplier=0.0, epsilon=None, prv_epsilon=None, rdp_epsilon=None, accountant_steps=0)
    return heads, {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in report.items()}

