"""Resolve one spec string to an open_clip model, its preprocessing and tokenizer.

Spec forms (the only entry point every stage uses, like open_clip's factory):

* ``NAME`` — an architecture with random weights: a built-in open_clip name
  (``ViT-B-32``) or a small config shipped in ``relink/model_configs``
  (``relink-vit-tiny``). Used for tests and for training the synthetic ladder.
* ``NAME:TAG`` — a built-in name with a pretrained tag (``ViT-B-16:openai``);
  downloads unless the weights are in the local cache.
* ``NAME:FILE`` — an architecture with weights from a local checkpoint file
  (``ViT-B-32:/data/chexzero/best_64_5e-05_original_22000_0.864.pt``); the
  checkpoint must fit the config.
* ``hf-hub:ORG/REPO`` — a model published with an ``open_clip_config.json``
  on the Hugging Face hub (``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``).
* ``DIR`` or ``local-dir:DIR`` — a folder holding ``open_clip_config.json``
  and a weights file: what ``relink train`` and ``relink mitigate`` write.

Nothing is downloaded when ``HF_HUB_OFFLINE=1`` (tests and CI set it).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ModelError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"


@dataclass
class LoadedModel:
    """An open_clip model with what is needed to feed it."""

    spec: str
    model: Any  # open_clip.CLIP / CustomTextCLIP
    preprocess: Callable  # PIL image -> tensor (eval transform)
    tokenizer: Callable  # list[str] -> LongTensor
    fingerprint: str  # hash of the state dict (see weights_fingerprint)
    preprocess_cfg: dict[str, Any]
    model_cfg: dict[str, Any] | None = None  # the open_clip config it was built from, when known


def register_project_configs() -> list[str]:
    """Register ``relink/model_configs/*.json`` with open_clip; return their names."""
    import open_clip

    names = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
    # add_model_config appends the folder and rescans every config each call: only when one is missing.
    if names and not set(names) <= set(open_clip.list_models()):
        open_clip.add_model_config(CONFIG_DIR)
    return names


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split a spec into ``(model_name, pretrained)`` as open_clip's factory takes them."""
    spec = spec.strip()
    if not spec:
        raise ModelError("empty model spec")
    if spec.startswith(("hf-hub:", "local-dir:")):
        return spec, None
    if os.path.isdir(spec):
        return f"local-dir:{spec}", None
    name, sep, tag = spec.partition(":")
    return name, (tag or None) if sep else None


def _unknown_name(name: str) -> ModelError:
    import open_clip

    names = open_clip.list_models()
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"; did you mean: {', '.join(close)}" if close else ""
    return ModelError(f"unknown model {name!r}{hint} (`python -c 'import open_clip; print(open_clip.list_models())'` lists all)")


def weights_fingerprint(model) -> str:
    """sha256 (16 hex) over parameter and buffer names, shapes and bytes, in state-dict order."""
    h = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def load_model(spec: str, device: str = "cpu", **create_kwargs: Any) -> LoadedModel:
    """Build the model a spec names, in eval mode, with its eval transform and tokenizer.

    Raises :class:`ModelError` with close matches for an unknown name, and a
    clear message for a checkpoint that does not fit its config or a download
    that is not possible offline.
    """
    import open_clip

    register_project_configs()
    model_name, pretrained = parse_spec(spec)
    if not model_name.startswith(("hf-hub:", "local-dir:")):
        if model_name.replace("/", "-") not in open_clip.list_models():
            raise _unknown_name(model_name)
        if pretrained and not os.path.isfile(pretrained) and os.sep in pretrained:
            raise ModelError(f"checkpoint file not found: {pretrained}")
    # HF text towers would otherwise fetch base weights even with pretrained=None.
    create_kwargs.setdefault("pretrained_text", False)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device=device, **create_kwargs
        )
    except RuntimeError as exc:
        msg = str(exc)
        if _OFFLINE_HINTS[0] in msg or _OFFLINE_HINTS[1] in msg:
            raise _not_cached(spec) from None
        if "size mismatch" in msg or "Missing key" in msg or "Unexpected key" in msg:
            first = next((ln.strip() for ln in msg.splitlines() if "size mismatch" in ln or "key" in ln), msg[:300])
            raise ModelError(f"checkpoint does not fit the config of {spec!r}: {first}") from None
        raise ModelError(f"cannot load model {spec!r}: {msg.splitlines()[0] if msg else exc!r}") from None
    except AssertionError as exc:
        # open_clip asserts while resizing position embeddings to a checkpoint of another width.
        what = "checkpoint does not fit the config of" if pretrained or model_name.startswith("local-dir:") else "cannot load model"
        raise ModelError(f"{what} {spec!r}: {exc or 'assertion failed in open_clip'}") from None
    except (FileNotFoundError, ValueError, OSError, ImportError) as exc:
        raise ModelError(f"cannot load model {spec!r}: {exc}") from None
    model.eval()
    tokenizer = _tokenizer(spec, model_name)
    pp_cfg = dict(getattr(getattr(model, "visual", None), "preprocess_cfg", {}) or {})
    logging.getLogger(__name__).debug("loaded %s", spec)
    return LoadedModel(spec, model, preprocess, tokenizer, weights_fingerprint(model), pp_cfg, model_config(model_name))


_OFFLINE_HINTS = ("cannot find the requested files in the local cache", "offline mode is enabled")


def _not_cached(spec: str) -> ModelError:
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    why = "HF_HUB_OFFLINE=1 forbids downloading" if offline else "the download failed"
    return ModelError(
        f"model {spec!r} is not in the local Hugging Face cache and {why}; load it once with network access "
        "(or point HF_HOME at a cache that holds it), or use a local checkpoint (NAME:FILE or a local-dir)"
    )


def _tokenizer(spec: str, model_name: str) -> Callable:
    """open_clip's tokenizer for a model; a ``local-dir`` without HF tokenizer files uses ``hf_tokenizer_name``.

    ``open_clip.get_tokenizer("local-dir:DIR")`` reads an HF tokenizer from DIR
    itself, but a checkpoint written by :func:`relink.models.checkpoint.save_checkpoint`
    holds only weights and config, so the tokenizer the config names is used.
    """
    import open_clip

    try:
        return open_clip.get_tokenizer(model_name)
    except Exception as exc:  # noqa: BLE001 - transformers raises several types here
        first = str(exc).splitlines()[0] if str(exc) else repr(exc)
        text_cfg = (model_config(model_name) or {}).get("text_cfg", {}) if model_name.startswith("local-dir:") else {}
        name = text_cfg.get("hf_tokenizer_name")
        if not name:
            if any(h in str(exc) for h in _OFFLINE_HINTS):
                raise _not_cached(spec) from None
            raise ModelError(f"cannot load the tokenizer of {spec!r}: {first}") from None
        try:
            return open_clip.tokenizer.HFTokenizer(
                name,
                context_length=text_cfg.get("context_length", open_clip.tokenizer.DEFAULT_CONTEXT_LENGTH),
                tokenizer_mode=text_cfg.get("tokenizer_mode"),
                **(text_cfg.get("tokenizer_kwargs") or {}),
            )
        except Exception as exc2:  # noqa: BLE001
            raise ModelError(f"cannot load the tokenizer {name!r} named by {spec!r}: {str(exc2).splitlines()[0]}") from None


def model_config(model_name: str) -> dict[str, Any] | None:
    """The open_clip ``model_cfg`` behind a parsed model name, without downloading."""
    import json

    import open_clip

    if model_name.startswith("local-dir:"):
        cfg_file = Path(model_name[len("local-dir:"):]) / "open_clip_config.json"
        return json.loads(cfg_file.read_text()).get("model_cfg") if cfg_file.is_file() else None
    if model_name.startswith("hf-hub:"):
        try:
            from open_clip.factory import _get_hf_config

            return _get_hf_config(model_name[len("hf-hub:"):]).get("model_cfg")
        except Exception:  # offline and not cached: the config is not needed to run
            return None
    return open_clip.get_model_config(model_name.replace("/", "-"))
