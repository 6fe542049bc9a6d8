"""Trunk-feature datasets for head training, and the checks on what is private.

Contracts:

* the **private set** is the ``split == "train"`` rows of an EmbeddingSet
  with trunk features (:func:`private_split`);
* the **negative bank** shares no pair with the private set (with the patient unit, no patient), nor any
  identical trunk row (:func:`check_disjoint`); by default the cohort's ``validate`` split. It is treated as
  public: it gets no privacy guarantee;
* a **sampled unit** is one study pair (:class:`PairFeatures`, items ``(image_trunk (d_i,), text_trunk (d_t,))``)
  or one patient (:class:`PatientFeatures`, items ``(image (P, d_i), text (P, d_t), mask (P,))`` padded to the
  largest patient's pair count ``P``: memory per batch grows with ``B x P``; capping such patients upstream is
  compatible with the guarantee, as it uses only the patient's own data).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch.utils.data import Dataset

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from .spec import PRIVACY_UNITS


class PairFeatures(Dataset):
    """One item per study pair: ``(image_trunk, text_trunk)`` float32 tensors."""

    def __init__(self, image_trunk: np.ndarray, text_trunk: np.ndarray):
        self.image = torch.as_tensor(np.asarray(image_trunk, dtype=np.float32))
        self.text = torch.as_tensor(np.asarray(text_trunk, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, i):
        return self.image[i], self.text[i]


class PatientFeatures(Dataset):
    """One item per patient: all of the patient's pairs, padded, with a mask (the loss sums them, so Opacus clips
    the *patient's* summed gradient as one)."""

    def __init__(self, image_trunk: np.ndarray, text_trunk: np.ndarray, patient_id: np.ndarray):
        self.image = torch.as_tensor(np.asarray(image_trunk, dtype=np.float32))
        self.text = torch.as_tensor(np.asarray(text_trunk, dtype=np.float32))
        codes = np.unique(np.asarray(patient_id).astype(str), return_inverse=True)[1].ravel()
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes)
        self.width = int(counts.max())
        index = np.full((len(counts), self.width), -1, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        slot = np.arange(len(order)) - np.repeat(starts, counts)
        index[codes[order], slot] = order
        self.index = torch.as_tensor(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, j):
        idx = self.index[j]
        mask = idx >= 0
        safe = idx.clamp(min=0)
        return self.image[safe] * mask[:, None], self.text[safe] * mask[:, None], mask.float()


def make_dataset(es: EmbeddingSet, unit: str = "pair") -> Dataset:
    """The dataset of sampled units for ``unit`` ('pair' or 'patient')."""
    if unit not in PRIVACY_UNITS:
        raise RelinkError(f"--privacy-unit must be one of {', '.join(PRIVACY_UNITS)}, got {unit!r}")
    require_trunk(es, "private set")
    if unit == "pair":
        return PairFeatures(es.image_trunk, es.text_trunk)
    return PatientFeatures(es.image_trunk, es.text_trunk, es.rows["patient_id"].to_numpy())


def require_trunk(es: EmbeddingSet, what: str) -> None:
    if not es.has_trunk:
        where = f" {es.path}" if es.path else ""
        raise RelinkError(f"{what}{where} has no trunk features (image_trunk.npy, text_trunk.npy); re-run `relink embed`")


def private_split(es: EmbeddingSet, split: str = "train") -> EmbeddingSet:
    """The rows of ``es`` whose ``split`` is ``split``; an empty result is an error."""
    require_trunk(es, "embedding set")
    part = es.split(split)
    if len(part) == 0:
        where = f"{es.path}: " if es.path else ""
        have = ", ".join(sorted(map(str, es.rows["split"].unique()))) or "none"
        raise RelinkError(f"{where}no rows with split == {split!r} to train on (splits present: {have})")
    return part


def default_bank(es: EmbeddingSet, split: str = "validate") -> EmbeddingSet:
    """The cohort's own held-out ``validate`` split, the default negative bank."""
    part = es.split(split)
    if len(part) == 0:
        where = f"{es.path}: " if es.path else ""
        raise RelinkError(f"{where}no {split!r} rows to use as the negative bank; pass --bank DIR")
    return part


def _row_hashes(x: np.ndarray) -> set[bytes]:
    return {hashlib.blake2b(np.ascontiguousarray(r, dtype=np.float32).tobytes(), digest_size=12).digest() for r in x}


def _shared(a: EmbeddingSet, b: EmbeddingSet, col: str) -> int:
    return len(set(a.rows[col].astype(str)) & set(b.rows[col].astype(str)))


def check_disjoint(private: EmbeddingSet, bank: EmbeddingSet, unit: str = "pair") -> None:
    """Raise :class:`RelinkError` if the bank overlaps the private set: a shared pair, a shared patient when the
    unit is the patient, or an identical image trunk row (a copy under new ids); counts, never identifiers."""
    require_trunk(bank, "negative bank")
    if len(bank) == 0:
        raise RelinkError("the negative bank is empty")
    if bank.image_trunk.shape[1] != private.image_trunk.shape[1] or bank.text_trunk.shape[1] != private.text_trunk.shape[1]:
        raise RelinkError(
            f"negative bank trunk dims ({bank.image_trunk.shape[1]}, {bank.text_trunk.shape[1]}) differ from the "
            f"private set's ({private.image_trunk.shape[1]}, {private.text_trunk.shape[1]}): made by another model?"
        )
    keys = [("pair_id", "pair")] + ([("patient_id", "patient")] if unit == "patient" else [])
    for col, what in keys:
        shared = _shared(private, bank, col)
        if shared:
            raise RelinkError(
                f"the negative bank overlaps the private set: {shared} shared {what}(s); "
                "the bank must be data outside the private training set"
            )
    copies = _row_hashes(np.asarray(private.image_trunk)) & _row_hashes(np.asarray(bank.image_trunk))
    if copies:
        raise RelinkError(f"the negative bank holds {len(copies)} image trunk row(s) identical to private rows (a copy under other ids?)")


def check_bank_outside(bank: EmbeddingSet, evaluated: list[tuple[str, EmbeddingSet]]) -> None:
    """Raise :class:`RelinkError` if the bank shares a pair or a patient with a set ``(name, set)`` evaluated after
    mitigation: the heads push the bank's reports away from other images, so such a bank would tilt the very
    re-linkage the evaluation measures."""
    for name, es in evaluated:
        pairs, patients = _shared(bank, es, "pair_id"), _shared(bank, es, "patient_id")
        if pairs or patients:
            raise RelinkError(
                f"the negative bank overlaps {name}: {pairs} shared pair(s), {patients} shared patient(s); "
                "the bank must lie outside both the private rows and the rows evaluated after mitigation"
            )


def bank_tensors(bank: EmbeddingSet, size: int | None = None, random_state: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Bank trunk features as tensors, optionally a random subset of ``size`` rows (all rows if ``size`` >= the bank)."""
    idx = np.arange(len(bank))
    if size is not None and size < len(bank):
        idx = np.sort(np.random.default_rng(random_state).choice(len(bank), size=size, replace=False))
    image = torch.as_tensor(np.asarray(bank.image_trunk[idx], dtype=np.float32))
    text = torch.as_tensor(np.asarray(bank.text_trunk[idx], dtype=np.float32))
    return image, text
