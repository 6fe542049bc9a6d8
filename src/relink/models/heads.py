"""The projection heads of an open_clip model, as two float32 ``nn.Linear`` over trunk features.

The mitigation trains only the projections from each tower's pooled (*trunk*) features to the shared
space; they are handed out as ``nn.Linear`` copies (layers Opacus can hook) and written back, so the
model is an ordinary open_clip model again (:mod:`.trunks` computes the features they act on).

Why it works this way:

* a Parameter ``P`` [width, embed] used as ``x @ P`` is ``nn.Linear`` with ``weight = P.T``, written
  back with ``P.copy_(W.T)``;
* an MLP head (timm ``timm_proj='mlp'``, HF ``hf_proj_type='mlp'`` as in BiomedCLIP) is not one linear
  map: its final ``nn.Linear`` is the head, the layers before it count as (frozen) trunk;
* ModifiedResNet applies ``attnpool.c_proj`` inside ``F.multi_head_attention_forward``, so hooks never
  fire; the projection is affine per token and only the pooled token is kept, so running the pool with
  an identity ``c_proj`` gives the pre-projection features exactly.

The timm test config uses timm's own image size (160 px): a timm ViT built at another size through
``force_image_size`` cannot be reloaded (open_clip resizes its positional embedding, not timm's).
Towers without a projection, projections fused into a timm attention pool, and CoCa are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModelError

__all__ = [
    "Heads",
    "HeadLocation",
    "ProjectionSlot",
    "locate_heads",
    "extract_heads",
    "write_heads",
    "project",
]


@dataclass
class Heads:
    """The two projections as float32 ``nn.Linear``: trunk dim -> embed dim (bias allowed)."""

    image: nn.Linear
    text: nn.Linear


@dataclass(frozen=True)
class ProjectionSlot:
    """Where one tower's projection lives: ``path`` from the model (``"visual.proj"``), ``kind``
    ``"matrix"`` (a Parameter used as ``x @ P``) or ``"linear"``, and how a trunk pass ``blank``s it:
    ``"none"`` (set to None), ``"identity"`` (``nn.Identity``) or ``"identity_linear"`` (an identity
    ``nn.Linear``, for a projection used functionally through ``.weight``)."""

    path: str
    kind: str
    blank: str
    in_features: int  # trunk feature dimension
    out_features: int  # embedding dimension
    bias: bool
    note: str = ""


@dataclass(frozen=True)
class HeadLocation:
    """Where the image and text projections of one model live."""

    family: str  # e.g. "vit+text-transformer", "timm+hf-text", "modified-resnet+text-transformer"
    image: ProjectionSlot
    text: ProjectionSlot


# ---------------------------------------------------------------- locating


def resolve(model, path: str):
    """The attribute a dotted path (``visual.proj``, ``text.proj.2``) names."""
    obj = model
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def owner_of(model, path: str):
    """``(object holding the last attribute, its name)`` for a dotted path."""
    head, _, attr = path.rpartition(".")
    return (resolve(model, head) if head else model), attr


def _slot(path: str, obj, blank: str, note: str = "") -> ProjectionSlot:
    if isinstance(obj, nn.Linear):
        return ProjectionSlot(path, "linear", blank, obj.in_features, obj.out_features, obj.bias is not None, note)
    if isinstance(obj, nn.Parameter) and obj.ndim == 2:
        return ProjectionSlot(path, "matrix", blank, obj.shape[0], obj.shape[1], False, note)
    raise ModelError(f"{path} is a {type(obj).__name__}, not a linear projection")


def _image_slot(model) -> tuple[str, ProjectionSlot]:
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.timm_model import TimmModel
    from open_clip.transformer import VisionTransformer

    visual = model.visual
    if isinstance(visual, VisionTransformer):
        if visual.proj is None:
            raise ModelError("the image tower has no projection (visual.proj is None); nothing to train")
        return "vit", _slot("visual.proj", visual.proj, "none")
    if isinstance(visual, ModifiedResNet):
        note = "c_proj of the attention pool; the pool up to it is trunk"
        return "modified-resnet", _slot("visual.attnpool.c_proj", visual.attnpool.c_proj, "identity_linear", note)
    if isinstance(visual, TimmModel):
        head = visual.head
        if "proj" in head._modules:
            return "timm", _slot("visual.head.proj", head.proj, "identity")
        if "mlp" in head._modules:
            note = "final Linear of the MLP head; fc1 and its activation count as trunk"
            return "timm", _slot("visual.head.mlp.fc2", head.mlp.fc2, "identity", note)
        if "pool" in head._modules:
            raise ModelError(
                "the timm image tower's projection is fused into its attention pool "
                "(timm_pool='abs_attn'/'rot_attn', timm_proj=''); head-only training is not supported for it"
            )
        classifier = visual.trunk.get_classifier() if hasattr(visual.trunk, "get_classifier") else None
        if isinstance(classifier, nn.Linear):
            name = next(n for n, m in visual.trunk.named_modules() if m is classifier)
            return "timm", _slot(f"visual.trunk.{name}", classifier, "identity", "timm's own classifier as projection")
        raise ModelError("the timm image tower has no projection (timm_proj='none'); nothing to train")
    raise ModelError(f"unsupported image tower {type(visual).__name__}: no known projection head")


def _text_slot(model) -> tuple[str, ProjectionSlot]:
    from open_clip.hf_model import HFTextEncoder
    from open_clip.transformer import TextTransformer

    if not hasattr(model, "text"):  # open_clip.CLIP keeps the text tower's parts on the model itself
        if getattr(model, "text_projection", None) is None:
            raise ModelError("the text tower has no projection (text_projection is None, proj_type='none')")
        return "text-transformer", _slot("text_projection", model.text_projection, "none")
    text = model.text
    if isinstance(text, TextTransformer):
        if text.text_projection is None:
            raise ModelError("the text tower has no projection (text.text_projection is None, proj_type='none')")
        return "text-transformer", _slot("text.text_projection", text.text_projection, "none")
    if isinstance(text, HFTextEncoder):
        proj = text.proj
        if isinstance(proj, nn.Linear):
            return "hf-text", _slot("text.proj", proj, "identity")
        if isinstance(proj, nn.Sequential) and len(proj) and isinstance(proj[-1], nn.Linear):
            note = "final Linear of the MLP head; the layers before it count as trunk"
            return "hf-text", _slot(f"text.proj.{len(proj) - 1}", proj[-1], "identity", note)
        raise ModelError(f"the HF text tower has no linear projection (text.proj is {type(proj).__name__}); nothing to train")
    raise ModelError(f"unsupported text tower {type(text).__name__}: no known projection head")


def locate_heads(model) -> HeadLocation:
    """Find both projections of an open_clip ``CLIP``/``CustomTextCLIP``; :class:`ModelError` if unsupported."""
    import open_clip

    if isinstance(model, open_clip.CoCa):
        raise ModelError("CoCa models are not supported: their text decoder also reads the image tokens")
    if not isinstance(model, (open_clip.CLIP, open_clip.CustomTextCLIP)):
        raise ModelError(f"not an open_clip CLIP model: {type(model).__name__}")
    image_family, image = _image_slot(model)
    text_family, text = _text_slot(model)
    if image.out_features != text.out_features:
        raise ModelError(f"image and text projections disagree on the embed dim ({image.out_features} vs {text.out_features})")
    return HeadLocation(f"{image_family}+{text_family}", image, text)


# ------------------------------------------------------- extract and write


def _as_linear(model, slot: ProjectionSlot) -> nn.Linear:
    obj = resolve(model, slot.path)
    lin = nn.Linear(slot.in_features, slot.out_features, bias=slot.bias)
    with torch.no_grad():
        if slot.kind == "matrix":
            lin.weight.copy_(obj.detach().T.float())
        else:
            lin.weight.copy_(obj.weight.detach().float())
            if slot.bias:
                lin.bias.copy_(obj.bias.detach().float())
    return lin


def extract_heads(model) -> Heads:
    """Float32 ``nn.Linear`` copies of both projections (on CPU; changing them leaves the model alone)."""
    loc = locate_heads(model)
    return Heads(image=_as_linear(model, loc.image), text=_as_linear(model, loc.text))


def _write(model, slot: ProjectionSlot, head: nn.Linear, tower: str) -> None:
    if not isinstance(head, nn.Linear):
        raise ModelError(f"the {tower} head must be an nn.Linear, got {type(head).__name__}")
    want = (slot.out_features, slot.in_features)
    if tuple(head.weight.shape) != want:
        raise ModelError(f"the {tower} head has shape {tuple(head.weight.shape)}, the model's {slot.path} needs {want}")
    bias = head.bias.detach() if head.bias is not None else None
    if not slot.bias and bias is not None and bool(torch.any(bias != 0)):
        raise ModelError(f"the {tower} head has a non-zero bias but the model's {slot.path} has none")
    obj = resolve(model, slot.path)
    with torch.no_grad():
        if slot.kind == "matrix":
            obj.copy_(head.weight.detach().T.to(obj.dtype))
        else:
            obj.weight.copy_(head.weight.detach().to(obj.weight.dtype))
            if slot.bias:
                obj.bias.copy_(bias.to(obj.bias.dtype) if bias is not None else torch.zeros_like(obj.bias))


def write_heads(model, heads: Heads) -> None:
    """Copy trained heads into the model in place (dtype and device of the model kept)."""
    loc = locate_heads(model)
    _write(model, loc.image, heads.image, "image")
    _write(model, loc.text, heads.text, "text")


# ---------------------------------------------------------------- project

PROJECT_BLOCK = 65536  # rows per block: bounded memory for sets of any size


def project(layer: nn.Linear, trunk) -> "np.ndarray":
    """``normalize(layer(trunk))`` as float32 (n, out), in blocks; ``trunk`` may be memory-mapped."""
    import numpy as np

    from ..embeddings import l2_normalise

    out = np.empty((len(trunk), layer.out_features), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(trunk), PROJECT_BLOCK):
            block = torch.from_numpy(np.array(trunk[start:start + PROJECT_BLOCK], dtype=np.float32))  # a writable copy
            out[start:start + PROJECT_BLOCK] = layer(block).numpy()
    return l2_normalise(out)


def check_reproduces(head: nn.Linear, es, tower: str, label: str, rows: int = 16) -> None:
    """Refuse (one line) a ``tower`` head that does not turn ``es``'s first ``rows`` trunk features into
    its stored embeddings (a wrong model); a set without fitting trunk features is left to the caller."""
    import numpy as np

    from ..errors import RelinkError

    trunk = getattr(es, f"{tower}_trunk")
    if trunk is None or head.in_features != trunk.shape[1]:
        return
    n = min(rows, len(es))
    if not np.allclose(project(head, np.asarray(trunk[:n])), es.unit(tower, np.arange(n)), atol=1e-3):
        raise RelinkError(f"the {tower} head of {label} does not reproduce {es.where}/{tower}.npy from its trunk "
                          "features: wrong --model?")
