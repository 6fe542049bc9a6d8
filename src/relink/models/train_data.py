"""Training pairs held in memory for the small synthetic ladder.

A training split of ~20k 64-px images is ~80 MB as uint8, so it is decoded once and each step slices,
augments and normalises a batch with tensor ops. Data order and augmentation are pure functions of
``(seed, epoch)`` and ``(seed, step)``, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import CohortError


@dataclass
class Pairs:
    """``images`` uint8 (n, C, S, S) with C = 1 (grayscale) or 3; ``tokens`` int64 (n, L); ``rows`` cohort positions."""

    images: torch.Tensor
    tokens: torch.Tensor
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


def load_pairs(files: Sequence[str], reports: Sequence[str], rows: np.ndarray, preprocess: Callable,
               tokenizer: Callable, pair_ids: Sequence[str] | None = None,
               size: tuple[int, int] | None = None) -> Pairs:
    """Decode every image to uint8 at the model's input ``size`` and tokenize every report."""
    from PIL import Image

    from .preprocess import pil_steps, to_uint8

    steps = pil_steps(preprocess)
    if steps is None:
        raise ValueError("expected an open_clip eval transform ending in ToTensor, Normalize")
    arrays = []
    for k, path in enumerate(files):
        try:
            with Image.open(path) as im:
                im.load()
                arr = to_uint8(im, steps, size).numpy()
        except Exception as exc:  # Pillow raises many types on corrupt data
            who = f"pair_id {pair_ids[k]!r}, " if pair_ids is not None else ""
            raise CohortError(f"row {int(rows[k])}, {who}image {path}: cannot read image ({exc.__class__.__name__}: {exc})") from None
        arrays.append(arr)
    if any(a.shape[0] == 3 for a in arrays):
        arrays = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrays]
    images = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, 3, 1, 1, dtype=torch.uint8)
    tokens = tokenizer(list(reports)) if len(reports) else torch.zeros(0, 1, dtype=torch.long)
    return Pairs(images, tokens, np.asarray(rows))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of ``n`` pairs used in ``epoch`` (a function of seed and epoch only)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def step_generator(seed: int, step: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The augmentation random stream of one step."""
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0] >> 1))
    return g


def augment(images_u8: torch.Tensor, gen: torch.Generator, max_shift: int = 2, jitter: float = 0.0) -> torch.Tensor:
    """Random translation (edge-padded, up to ``max_shift`` px) and brightness/contrast jitter, per image.

    No flips: a report's "left"/"right" must stay true of its image.
    """
    n, c, h, w = images_u8.shape
    dev = images_u8.device
    x = images_u8.to(torch.float32)
    padded = torch.nn.functional.pad(x, (max_shift,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen, device=dev)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen, device=dev)
    rows = (dy.view(n, 1) + torch.arange(h, device=dev).view(1, h))  # (n, h)
    cols = (dx.view(n, 1) + torch.arange(w, device=dev).view(1, w))  # (n, w)
    idx_r = rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * max_shift)
    x = padded.gather(2, idx_r)
    idx_c = cols.view(n, 1, 1, w).expand(n, c, h, w)
    x = x.gather(3, idx_c)
    if not jitter:
        return x.to(torch.uint8)
    gain = 1 + jitter * (2 * torch.rand(n, 1, 1, 1, generator=gen, device=dev) - 1)
    bias = 255 * jitter * (2 * torch.rand(n, 1, 1, 1, generator=gen, device=dev) - 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * gain + mean + bias
    return x.round().clamp(0, 255).to(torch.uint8)
