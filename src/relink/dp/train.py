"""Train the two projection heads, privately (Opacus DP-SGD) or not, on cached trunk features, with the privacy
report ``privacy.json`` holds.

The noise must be unknown for the guarantee to hold: a run whose seed is known can be replayed with and without
one unit, a perfect membership test. So the seed is secret (:func:`noise_seed`) unless ``spec.reproducible_noise``
publishes it, and the report then says ``for_release: false`` with :data:`relink.dp.spec.NOT_FOR_RELEASE`.
Loss values on the private data (``training_losses``) are NOT covered by the guarantee and are marked so;
``bank_losses`` (on the public bank) are post-processing of private outputs and safe to publish.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import torch

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from ..io import json_safe
from . import accounting
from .heads_data import bank_tensors, check_disjoint, make_dataset
from .loss import HeadPair, in_batch_infonce, project_bank
from .spec import MitigationSpec
from .steps import build, copy_linear, train_step


def noise_seed(spec: MitigationSpec) -> int:
    """The run's sampling and noise seed: the published one, or a secret one.

    Why not Opacus's ``secure_mode``: it needs ``torchcsprng``, which has no build for this torch. A 63-bit seed
    from :mod:`secrets` (the OS's entropy), held only in this process's memory and never written, printed or
    returned, keeps the run impossible to replay (guessing it means searching 2^63 seeds).

    What it does not give: a cryptographically secure stream. The noise and the Poisson sampling come from torch's
    generators (Mersenne Twister on the CPU), predictable from their internal state, and the Gaussian sampling is
    floating-point, with the known weaknesses of floating-point noise (Mironov 2012) that secure mode also
    addresses. The guarantee rests on the seed, and so the process memory, staying private.
    """
    if spec.reproducible_noise is not None:
        return int(spec.reproducible_noise)
    return secrets.randbits(63)


def bank_loss(heads: HeadPair, bank: tuple[torch.Tensor, torch.Tensor], temperature: float, limit: int = 4096) -> float:
    """Mean in-bank InfoNCE of the heads on public bank pairs (safe to publish)."""
    with torch.no_grad():
        image = project_bank(heads.image, bank[0][:limit])
        text = project_bank(heads.text, bank[1][:limit])
        return float(in_batch_infonce(image, text, temperature).mean())


def _n_pairs(dataset) -> int:
    return int((dataset.index >= 0).sum()) if hasattr(dataset, "index") else len(dataset)


def _check(train: EmbeddingSet, init, spec: MitigationSpec, n_units: int) -> None:
    if spec.temperature is None:
        raise ValueError("the InfoNCE temperature must be fixed before training (MitigationSpec.temperature)")
    if init.image.in_features != train.image_trunk.shape[1] or init.text.in_features != train.text_trunk.shape[1]:
        raise RelinkError(
            f"the heads take ({init.image.in_features}, {init.text.in_features}) features but the trunk features have "
            f"({train.image_trunk.shape[1]}, {train.text_trunk.shape[1]}): heads of another model?"
        )
    if spec.private:
        if spec.delta is None:
            raise RelinkError("--delta is required for private training")
        patients = int(train.rows["patient_id"].nunique()) if spec.privacy_unit == "pair" else None
        accounting.check_budget(spec.delta, n_units, spec.privacy_unit, patients)


def fit_heads(train: EmbeddingSet, bank: EmbeddingSet, init, spec: MitigationSpec,
              progress: bool | None = None) -> tuple[Any, dict[str, Any]]:
    """Train new projection heads on ``train``'s trunk features; return ``(heads, privacy_report)``.

    ``train``: the private rows, every one used. ``bank``: public negatives, disjoint from ``train`` (checked).
    ``init``: the starting ``Heads(image, text)``; the result has its type. With ``spec.private`` the run is
    (epsilon, delta)-DP per ``spec.privacy_unit`` under ``spec.accountant``; ``spec.noise_multiplier`` overrides
    the sigma search (the report then gives the epsilon it spends). The report is JSON-ready.
    """
    from tqdm.auto import tqdm

    check_disjoint(train, bank, spec.privacy_unit)
    dataset = make_dataset(train, spec.privacy_unit)
    n_units = len(dataset)
    _check(train, init, spec, n_units)
    rate, planned_steps = accounting.schedule(n_units, spec.batch_size, spec.epochs)
    seed = noise_seed(spec)
    bank_t = bank_tensors(bank, spec.bank_size, seed)
    setup = build(dataset, bank_t, init, spec, seed)
    del seed  # nothing below needs it; it must not reach the report
    losses, bank_losses, steps, empty = [], [], 0, 0
    bar = tqdm(total=spec.epochs * len(setup.loader), desc="private heads" if spec.private else "heads",
               disable=None if progress or progress is None else True, leave=False)  # None: off when not a terminal
    for _ in range(spec.epochs):
        epoch = []
        for batch in setup.loader:
            value = train_step(setup, batch)
            steps += 1
            empty += value is None
            if value is not None:
                epoch.append(value)
            bar.update(1)
        losses.append(float(np.mean(epoch)) if epoch else None)
        bank_losses.append(bank_loss(setup.heads, bank_t, spec.temperature))
    bar.close()
    heads = type(init)(image=copy_linear(setup.heads.image), text=copy_linear(setup.heads.text))
    private = spec.private
    report = {
        "private": private, "privacy_unit": spec.privacy_unit, "accountant": spec.accountant if private else None,
        "target_epsilon": spec.epsilon if private else None, "delta": spec.delta if private else None,
        "clip_norm": spec.clip_norm if private else None, "sample_rate": rate, "expected_batch_size": n_units * rate,
        "epochs": spec.epochs, "steps": steps, "planned_steps": planned_steps, "empty_batches": empty,
        "n_units": n_units, "n_pairs": _n_pairs(dataset), "n_bank": len(bank_t[0]), "lr": spec.lr, "optimizer": "adam",
        "temperature": spec.temperature, "grad_sample_mode": setup.grad_sample_mode,
        "noise_seed": "secret" if spec.reproducible_noise is None else spec.reproducible_noise,
        "for_release": spec.for_release, "release_note": spec.release_note,
        "loss": "symmetric InfoNCE against a fixed negative bank",
        "training_losses": losses,
        "training_losses_note": "mean loss on the private data per epoch: NOT covered by the guarantee, do not publish",
        "bank_losses": bank_losses,
    }
    if private:
        sigma = float(setup.optimizer.noise_multiplier)
        with accounting.quiet(), accounting.numerics(rate):
            spent = float(setup.engine.get_epsilon(spec.delta))  # the accountant that tracked the run
        eps = {a: spent if a == spec.accountant else accounting.epsilon_for(sigma, rate, steps, spec.delta, a)
               for a in accounting.ACCOUNTANTS}
        report.update(noise_multiplier=sigma, epsilon=spent, prv_epsilon=eps["prv"], rdp_epsilon=eps["rdp"],
                      accountant_steps=int(sum(h[2] for h in setup.engine.accountant.history)))
    else:
        report.update(noise_multiplier=0.0, epsilon=None, prv_epsilon=None, rdp_epsilon=None, accountant_steps=0)
    return heads, json_safe(report)
