"""A model's inputs, shared by embedding and training: uint8 images, per-batch normalisation, tokens.

An open_clip eval transform is ``Compose([resize, crop, convert-to-RGB,
ToTensor, Normalize])``. Everything before ``ToTensor`` is PIL work on one
image; the last two are the same arithmetic for every image. So an image is
decoded once to **uint8** at the model's input size (:func:`to_uint8`,
after the transform's PIL steps, :func:`pil_steps`) and a whole batch is
normalised at once (:func:`normalise`). ``normalise(to_uint8(im))`` equals
the model's own transform bit for bit (the same tensor operations; tested).

Why uint8: a quarter of float32's bytes between DataLoader processes, to the
GPU, and in memory (the ladder's training split is held decoded). Why here,
in the model layer: it depends only on a model's preprocessing and tokenizer,
and both :mod:`relink.embed` and :mod:`relink.models.ladder_train` use it.

:func:`input_key` says when two models take identical inputs (same
preprocessing, same tokenization), so one decode and one tokenization can
feed both (:func:`relink.embed.embed_many`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = ["pil_steps", "to_uint8", "normalise", "input_size", "tokenizer_key", "input_key"]

# Strings that tell tokenizers apart: case, punctuation, digits, whitespace runs, non-ASCII,
# and a long one that shows the context length and truncation rule.
_PROBES = (
    "FINDINGS: Left-sided pleural effusion; no pneumothorax.",
    "impression:   Cardiomegaly (moderate), 2.5 cm nodule\tRUL\n",
    "Ödem? naïve café – “quotes” and ‘apostrophes’ 12345",
    " ".join(f"word{i}" for i in range(600)),
)


def pil_steps(preprocess: Callable) -> tuple[Callable, Callable] | None:
    """The eval transform's PIL steps (all but ``ToTensor`` + ``Normalize``): for colour and for ``L`` images.

    The second keeps ``L`` images single-channel (the RGB conversion of a
    grayscale image is a channel copy that :func:`normalise` does). ``None``
    when ``preprocess`` is not such a transform.
    """
    from open_clip.transform import MaybeConvertMode
    from torchvision.transforms import Compose, Normalize, ToTensor

    steps = list(getattr(preprocess, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-1], Normalize) or not isinstance(steps[-2], ToTensor):
        return None
    pil = steps[:-2]
    gray = [t for t in pil if not (isinstance(t, MaybeConvertMode) and t.mode == "RGB")]
    return Compose(pil), Compose(gray)


def to_uint8(im, steps: tuple[Callable, Callable], size: tuple[int, int] | None) -> torch.Tensor:
    """uint8 (C, S, S), C = 1 for ``L`` images, 3 otherwise, after the PIL steps (skipped when they are the identity)."""
    colour, gray = steps
    if not (size and im.mode in ("L", "RGB") and im.size[::-1] == size):  # PIL sizes are (width, height)
        im = (gray if im.mode == "L" else colour)(im)
    arr = torch.from_numpy(np.array(im))  # a writable copy: torch refuses read-only buffers
    return arr.unsqueeze(0) if arr.ndim == 2 else arr.permute(2, 0, 1).contiguous()


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``Normalize(ToTensor(.))`` of a uint8 batch (n, C, S, S); C = 1 is repeated to RGB. Float input passes through."""
    if images.dtype != torch.uint8:
        return images
    x = images.to(torch.float32).div(255)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return x.sub(m).div(s)


def input_size(preprocess_cfg: dict[str, Any] | None) -> tuple[int, int] | None:
    """(height, width) of the model input named by an open_clip ``preprocess_cfg``."""
    size = (preprocess_cfg or {}).get("size")
    return (size, size) if isinstance(size, int) else tuple(size) if size else None


def tokenizer_key(tokenizer: Callable) -> dict[str, Any]:
    """What identifies a tokenizer's output: its class, context length and its tokens of a few probe strings.

    Two tokenizers with equal keys tokenize the probes identically (case,
    punctuation, whitespace, non-ASCII text and truncation included); that
    is the evidence that one can stand in for the other.
    """
    tokens = tokenizer(list(_PROBES))
    digest = hashlib.sha256(np.ascontiguousarray(np.asarray(tokens, dtype=np.int64)).tobytes()).hexdigest()[:16]
    return {"class": f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
            "context_length": getattr(tokenizer, "context_length", None), "probe_tokens": digest}


def input_key(preprocess: Callable, preprocess_cfg: dict[str, Any] | None, tokenizer: Callable) -> str:
    """A key equal for two models exactly when the same decoded images and tokens can feed both.

    Standard open_clip eval transforms are built from ``preprocess_cfg`` alone,
    so equal configs mean equal transforms; any other transform is keyed by
    its identity (never shared).
    """
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in (preprocess_cfg or {}).items()}
    standard = pil_steps(preprocess) is not None and input_size(cfg) is not None
    key = {"preprocess": cfg if standard else f"custom-transform-{id(preprocess)}", "tokenizer": tokenizer_key(tokenizer)}
    return json.dumps(key, sort_keys=True, default=str)
