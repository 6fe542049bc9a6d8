"""The rows the engine reads: an EmbeddingSet's arrays in work order, on one torch device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


def pick_device(device=None):
    """A torch device: the one asked for, else CUDA when available, else the CPU (one rule for every command,
    :func:`relink.models.device.resolve_device`)."""
    import torch

    from ...models.device import resolve_device

    return torch.device(resolve_device(device))


class WorkRows:
    """A row source (:class:`relink.embeddings.RowSource`) read in work order (work row w is source row
    ``order[w]``), onto ``device``."""

    def __init__(self, source, order: np.ndarray, device):
        self.source = source
        self.order = np.asarray(order, dtype=np.int64)
        self.identity = bool(np.array_equal(self.order, np.arange(len(self.order))))
        self.device = device
        self.d = source.d

    def __len__(self) -> int:
        return len(self.order)

    def numpy(self, positions) -> np.ndarray:
        """float32 rows at work ``positions`` (a slice or integer positions), on the host."""
        if isinstance(positions, slice) and self.identity:
            return self.source.read(positions)
        return self.source.read(self.order[positions])

    def take(self, positions):
        """The rows at work ``positions`` as a float32 tensor on the device."""
        import torch

        return torch.as_tensor(self.numpy(positions), device=self.device)


@dataclass(frozen=True)
class Rows:
    """What the engine counts over: n pairs in the set's order.

    ``image``, ``text``: row sources of the two (n, d) arrays (``read(positions)`` gives float32 unit rows;
    :class:`relink.embeddings.RowSource`); ``patient``: (n,) patient ids; ``groupings``: ``(negatives, codes)``
    pairs, each grouping refining the one before (positive-set groups, then pathology-matched groups).
    """

    image: Any
    text: Any
    patient: np.ndarray
    groupings: Sequence[tuple[str, np.ndarray]] = ()
