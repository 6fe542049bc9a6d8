"""New heads onto cached trunk features (no re-encoding), heads files, and the write-back into a checkpoint.

A heads file is one safetensors file with keys ``image.weight``, ``text.weight`` and, when present, ``image.bias``,
``text.bias``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from ..models.heads import project
from .heads_data import require_trunk

def heads_fingerprint(heads) -> str:
    """sha256 (16 hex) of both heads' weights and biases."""
    h = hashlib.sha256()
    for name, layer in (("image", heads.image), ("text", heads.text)):
        for key, t in layer.state_dict().items():
            t = t.detach().cpu().float().contiguous()
            h.update(f"{name}.{key}{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def apply_heads(es: EmbeddingSet, heads, meta_extra: dict[str, Any] | None = None) -> EmbeddingSet:
    """``es`` re-projected through ``heads`` (same rows and trunk features; nothing re-encoded); its meta.json
    records the heads under ``"heads"`` (fingerprint, base model, and ``meta_extra["heads"]``)."""
    require_trunk(es, "embedding set")
    if heads.image.in_features != es.image_trunk.shape[1] or heads.text.in_features != es.text_trunk.shape[1]:
        raise RelinkError(
            f"{es.path or 'embedding set'}: trunk dims ({es.image_trunk.shape[1]}, {es.text_trunk.shape[1]}) do not fit "
            f"the heads ({heads.image.in_features}, {heads.text.in_features})"
        )
    extra = dict(meta_extra or {})
    meta = dict(es.meta)
    meta["heads"] = {
        "fingerprint": heads_fingerprint(heads),
        "base_model": es.meta.get("model"),
        "base_weights_fingerprint": es.meta.get("weights_fingerprint"),
        **extra.pop("heads", {}),
    }
    meta.update(extra)
    return EmbeddingSet(
        es.rows.copy(), project(heads.image, es.image_trunk), project(heads.text, es.text_trunk),
        np.asarray(es.image_trunk), np.asarray(es.text_trunk), meta, None,
    )


def save_heads(heads, path: str | os.PathLike) -> Path:
    """Both heads in one safetensors file, written atomically."""
    from safetensors.torch import save_file

    from ..io import atomic_path

    state = {f"{name}.{k}": v.detach().cpu().float().contiguous()
             for name, layer in (("image", heads.image), ("text", heads.text)) for k, v in layer.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "relink-heads", "fingerprint": heads_fingerprint(heads)})
    return Path(path)


def load_heads(path: str | os.PathLike, heads_type=None):
    """Read :func:`save_heads`'s file as ``heads_type(image=Linear, text=Linear)`` (default ``relink.models.heads.Heads``)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise RelinkError(f"heads file not found: {path}")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own types
        raise RelinkError(f"{path}: not a heads file ({exc})") from None
    layers = {}
    for name in ("image", "text"):
        w = state.get(f"{name}.weight")
        if w is None:
            raise RelinkError(f"{path}: no {name}.weight in the heads file")
        b = state.get(f"{name}.bias")
        layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        with torch.no_grad():
            layer.weight.copy_(w)
            if b is not None:
                layer.bias.copy_(b)
        layers[name] = layer
    if heads_type is None:
        from ..models.heads import Heads as heads_type
    return heads_type(image=layers["image"], text=layers["text"])


def write_checkpoint(loaded, heads, out_dir: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``heads`` into ``loaded.model`` (a :class:`relink.models.LoadedModel`) and save it as an ordinary
    open_clip ``local-dir`` checkpoint, once the heads read back equal ``heads``."""
    from ..models.checkpoint import save_checkpoint
    from ..models.heads import extract_heads, write_heads

    if loaded.model_cfg is None:
        raise RelinkError(f"the config of model {loaded.spec!r} is unknown, so no loadable checkpoint can be written")
    write_heads(loaded.model, heads)
    back = extract_heads(loaded.model)
    if heads_fingerprint(back) != heads_fingerprint(heads):
        raise RelinkError(f"writing the heads back into {loaded.spec!r} did not take (heads read back differ)")
    return save_checkpoint(loaded.model, out_dir, loaded.model_cfg, loaded.preprocess_cfg, extra)
