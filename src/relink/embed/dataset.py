"""Cohort rows as model inputs: a torch Dataset of (image, report tokens) and its loader.

Contract of one item (a dict, collated into batches by the default collate):

* ``index``  — the row's position in the cohort manifest (int);
* ``image``  — uint8 (3, S, S): the eval transform up to, not including, ``ToTensor`` + ``Normalize``
  (:mod:`relink.models.preprocess`); zeros when the file is unreadable; float32 for a non-standard
  transform, applied whole;
* ``tokens`` — int64 (context_length,), the model tokenizer's output;
* ``error``  — ``""``, or why the image could not be read.

Decoding never raises in a worker: a corrupt file must become a message naming its row.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..models.preprocess import input_size, normalise, pil_steps, to_uint8


class PairDataset(Dataset):
    """Image file and report text of cohort rows, prepared for one model (see module doc)."""

    def __init__(self, image_files: Sequence[str], reports: Sequence[str], preprocess: Callable,
                 tokenizer: Callable, preprocess_cfg: dict[str, Any] | None = None):
        if len(image_files) != len(reports):
            raise ValueError("image_files and reports differ in length")
        self.image_files = list(map(str, image_files))
        self.reports = list(map(str, reports))
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        cfg = preprocess_cfg or {}
        self.size = input_size(cfg)
        self.steps = pil_steps(preprocess) if self.size and "mean" in cfg and "std" in cfg else None
        self.mean = tuple(cfg.get("mean", (0.0, 0.0, 0.0)))
        self.std = tuple(cfg.get("std", (1.0, 1.0, 1.0)))

    def __len__(self) -> int:
        return len(self.reports)

    def load_image(self, path: str) -> torch.Tensor:
        """One image file as the dataset delivers it (raises on an unreadable file)."""
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            if self.steps is None:
                return self.preprocess(im)
            x = to_uint8(im, self.steps, self.size)
            return x.expand(3, -1, -1) if x.shape[0] == 1 else x

    def model_input(self, images: torch.Tensor) -> torch.Tensor:
        """A collated batch of images -> the float tensor the model takes (the eval transform's result)."""
        return normalise(images, self.mean, self.std)

    def blank(self) -> torch.Tensor:
        h, w = self.size or (224, 224)
        return torch.zeros(3, h, w, dtype=torch.float32 if self.steps is None else torch.uint8)

    def __getitem__(self, i: int) -> dict[str, Any]:
        error = ""
        try:
            image = self.load_image(self.image_files[i])
        except Exception as exc:  # Pillow raises many types on corrupt data; report, never crash a worker
            image = self.blank()
            error = f"{exc.__class__.__name__}: {exc}"
        tokens = self.tokenizer([self.reports[i]])[0]
        return {"index": i, "image": image, "tokens": tokens, "error": error}


def range_batches(ranges: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Batches of row indices that never cross a range boundary, so a shard's numbers do not depend on
    which shards share its process (resumed and distributed runs are byte-identical)."""
    out = []
    for start, stop in ranges:
        for b in range(start, stop, batch_size):
            out.append(list(range(b, min(b + batch_size, stop))))
    return out


def batches_per_range(ranges: Sequence[tuple[int, int]], batch_size: int) -> list[int]:
    return [math.ceil((stop - start) / batch_size) for start, stop in ranges]


def default_workers(world_size: int = 1, device: str = "cpu") -> int:
    """DataLoader workers per process: on a GPU this process's cores but one (at most 8); on the CPU
    the model already uses every core, so none up to 2 cores, then a quarter of them."""
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 2
    share = max(1, cpus // max(1, world_size))
    if device.startswith("cuda"):
        return max(1, min(8, share - 1))
    return 0 if share <= 2 else min(8, share // 4)


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
