"""A model's inputs, shared by embedding and training: uint8 images, per-batch normalisation, tokens.

An open_clip eval transform is PIL steps then ``ToTensor`` + ``Normalize``: an image is decoded once
to uint8 at the model's input size (a quarter of float32's bytes between processes and in memory) and
a batch is normalised at once; ``normalise(to_uint8(im))`` equals the model's transform bit for bit.
:func:`input_key` says when one decode and one tokenization can feed two models.
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
    """The eval transform's PIL steps for colour and for ``L`` images (kept single-channel:
    :func:`normalise` copies the channel); ``None`` when ``preprocess`` is not such a transform."""
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
    """What identifies a tokenizer's output: its class, context length and its tokens of the probes."""
    tokens = tokenizer(list(_PROBES))
    digest = hashlib.sha256(np.ascontiguousarray(np.asarray(tokens, dtype=np.int64)).tobytes()).hexdigest()[:16]
    return {"class": f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
            "context_length": getattr(tokenizer, "context_length", None), "probe_tokens": digest}


def input_key(preprocess: Callable, preprocess_cfg: dict[str, Any] | None, tokenizer: Callable) -> str:
    """A key equal for two models exactly when the same decoded images and tokens can feed both
    (a standard transform is built from ``preprocess_cfg`` alone; any other is never shared)."""
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in (preprocess_cfg or {}).items()}
    standard = pil_steps(preprocess) is not None and input_size(cfg) is not None
    key = {"preprocess": cfg if standard else f"custom-transform-{id(preprocess)}", "tokenizer": tokenizer_key(tokenizer)}
    return json.dumps(key, sort_keys=True, default=str)
