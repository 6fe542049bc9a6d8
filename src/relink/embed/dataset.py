"""Cohort rows as model inputs: a torch Dataset of (image tensor, report tokens) and its loader.

Contract of one item (a dict, collated into batches by the default collate):

* ``index``  — the row's position in the cohort manifest (int);
* ``image``  — float32 (3, S, S), exactly what the model's eval transform
  (``LoadedModel.preprocess``) gives for the file; zeros when it is unreadable;
* ``tokens`` — int64 (context_length,), the model tokenizer's output;
* ``error``  — ``""``, or why the image could not be read (the embedder turns
  it into an error naming the row, or skips the row under ``--skip-bad``).

Decoding stays in the DataLoader workers and never raises there: a corrupt
file must become a clear message naming its row, not a worker traceback.

Speed: the eval transform costs ~3x the PNG decode itself (PIL resize, mode
conversion, ``to_tensor``). When the decoded image already has the model's
input size and mode ``L`` or ``RGB`` — the synthetic cohort, or a cohort
resized ahead of time — every resize/crop in that transform is the identity,
so :func:`fast_tensor` does the remaining ``to_tensor`` + ``Normalize`` with
the same tensor ops (bit-identical; tested). Any other image takes the model's
own transform.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset


def fast_tensor(im, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``Normalize(ToTensor(im.convert("RGB")))`` for an ``L``/``RGB`` PIL image, without PIL copies."""
    import numpy as np

    arr = torch.from_numpy(np.array(im))  # a writable copy: torch refuses read-only buffers
    if arr.ndim == 2:
        arr = arr.unsqueeze(-1)
    x = arr.permute(2, 0, 1).to(dtype=torch.float32).div(255)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.sub(mean).div(std)


class PairDataset(Dataset):
    """Image file and report text of cohort rows, preprocessed for one model (see module doc)."""

    def __init__(self, image_files: Sequence[str], reports: Sequence[str], preprocess: Callable,
                 tokenizer: Callable, preprocess_cfg: dict[str, Any] | None = None):
        if len(image_files) != len(reports):
            raise ValueError("image_files and reports differ in length")
        self.image_files = list(map(str, image_files))
        self.reports = list(map(str, reports))
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        cfg = preprocess_cfg or {}
        size = cfg.get("size")
        size = (size, size) if isinstance(size, int) else tuple(size) if size else None
        self.input_size = size or (224, 224)
        self.fast_size = size if size and cfg.get("mode", "RGB") == "RGB" and "mean" in cfg and "std" in cfg else None
        self.mean = torch.tensor(cfg.get("mean", (0.0, 0.0, 0.0)), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(cfg.get("std", (1.0, 1.0, 1.0)), dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.reports)

    def load_image(self, path: str) -> torch.Tensor:
        """The model input for one image file (raises on an unreadable file)."""
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            # PIL reports (width, height); the config's size is (height, width).
            if self.fast_size and im.mode in ("L", "RGB") and im.size[::-1] == self.fast_size:
                return fast_tensor(im, self.mean, self.std)
            return self.preprocess(im)

    def __getitem__(self, i: int) -> dict[str, Any]:
        error = ""
        try:
            image = self.load_image(self.image_files[i])
        except Exception as exc:  # Pillow raises many types on corrupt data; report, never crash a worker
            image = torch.zeros(3, *self.input_size)
            error = f"{exc.__class__.__name__}: {exc}"
        tokens = self.tokenizer([self.reports[i]])[0]
        return {"index": i, "image": image, "tokens": tokens, "error": error}


def range_batches(ranges: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Batches of row indices that never cross a range boundary (one shard = whole batches).

    Keeping batches inside a shard makes a shard's numbers independent of
    which other shards run in the same process, so a resumed or distributed
    run computes byte-identical arrays.
    """
    out = []
    for start, stop in ranges:
        for b in range(start, stop, batch_size):
            out.append(list(range(b, min(b + batch_size, stop))))
    return out


def batches_per_range(ranges: Sequence[tuple[int, int]], batch_size: int) -> list[int]:
    return [math.ceil((stop - start) / batch_size) for start, stop in ranges]


def default_workers(world_size: int = 1) -> int:
    """DataLoader workers per process: the cores left after the model's own, at most 8."""
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 2
    return max(1, min(8, cpus // max(1, world_size) - 1))


def make_loader(dataset: PairDataset, batches: list[list[int]], num_workers: int, pin_memory: bool = False) -> DataLoader:
    """A loader yielding ``batches`` in order (the embedder relies on the order)."""
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["prefetch_factor"] = 4
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, pin_memory=pin_memory, **kwargs)


def iterate(loader: DataLoader) -> Iterator[dict[str, Any]]:
    """Iterate a loader, shutting its workers down even when the consumer stops early."""
    it = iter(loader)
    try:
        yield from it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
