"""Resolve one spec string to an open_clip model, its preprocessing and tokenizer.

Spec forms (every stage loads through here):

* ``NAME`` — an architecture with random weights (built-in, or a config in ``relink/model_configs``);
* ``NAME:TAG`` — a built-in name with a pretrained tag (``ViT-B-16:openai``);
* ``NAME:FILE`` — an architecture with weights from a local checkpoint file that fits it;
* ``hf-hub:ORG/REPO`` — a model with an ``open_clip_config.json`` on the Hugging Face hub;
* ``DIR`` or ``local-dir:DIR`` — a folder with ``open_clip_config.json`` and a weights file (what
  ``relink train`` and ``relink mitigate`` write).
"""

from __future__ import annotations

import contextlib
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

    A spec that names weights never falls back to random ones (open_clip only logs that it did, so
    ``require_pretrained=True``); failures are one :class:`ModelError` line naming the spec or file.
    """
    import open_clip

    register_project_configs()
    model_name, pretrained = parse_spec(spec)
    if model_name.startswith("local-dir:"):
        _check_model_folder(Path(model_name[len("local-dir:"):]))
    elif not model_name.startswith("hf-hub:"):
        if model_name.replace("/", "-") not in open_clip.list_models() and (os.sep in model_name or model_name.startswith(".")):
            raise ModelError(f"model folder not found: {model_name}")
        if model_name.replace("/", "-") not in open_clip.list_models():
            raise _unknown_name(model_name)
        if pretrained and os.path.isdir(pretrained):
            raise ModelError(f"checkpoint {pretrained} is a folder; give NAME:FILE for a weights file, "
                             "or the folder alone for an open_clip checkpoint folder")
        if pretrained and not os.path.isfile(pretrained) and (os.sep in pretrained or _looks_like_file(pretrained)):
            raise ModelError(f"checkpoint file not found: {pretrained}")
        if pretrained and os.path.isfile(pretrained) and os.path.getsize(pretrained) == 0:
            raise ModelError(f"checkpoint {pretrained} is empty (0 bytes)")
    names_weights = bool(pretrained) or model_name.startswith(("hf-hub:", "local-dir:"))
    # HF text towers would otherwise fetch base weights even with pretrained=None.
    create_kwargs.setdefault("pretrained_text", False)
    try:
        with _held_logs(random_on_purpose=not names_weights):
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained, device=device, require_pretrained=names_weights, **create_kwargs
            )
    except Exception as exc:  # noqa: BLE001 - everything open_clip raises here is about this spec's model or weights
        raise _load_error(spec, model_name, pretrained, exc) from None
    model.eval()
    tokenizer = _tokenizer(spec, model_name)
    pp_cfg = dict(getattr(getattr(model, "visual", None), "preprocess_cfg", {}) or {})
    logging.getLogger(__name__).debug("loaded %s", spec)
    return LoadedModel(spec, model, preprocess, tokenizer, weights_fingerprint(model), pp_cfg, model_config(model_name))


#: what open_clip reads as the weights of a model folder (its ``_find_checkpoint_in_dir``)
FOLDER_WEIGHTS = ("*.safetensors", "*.bin", "*.pth")
_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")


def _looks_like_file(tag: str) -> bool:
    return tag.lower().endswith(_FILE_SUFFIXES)


def _check_model_folder(folder: Path) -> None:
    """A model folder must hold the config and a weights file that open_clip will read (checked before building)."""
    if not folder.is_dir():
        raise ModelError(f"model folder not found: {folder}")
    if not (folder / "open_clip_config.json").is_file():
        raise ModelError(f"{folder}: not an open_clip model folder (no open_clip_config.json)")
    weights = [p for pattern in FOLDER_WEIGHTS for p in folder.glob(pattern)]
    if not weights:
        others = sorted(p.name for p in folder.glob("*.pt"))
        hint = f" ({others[0]} is not read from a folder: give NAME:{folder / others[0]})" if others else ""
        raise ModelError(f"{folder}: no weights file (open_clip reads *.safetensors, *.bin or *.pth in a model "
                         f"folder){hint}; refusing to use a randomly initialised model")
    empty = [p for p in weights if p.stat().st_size == 0]
    if empty:
        raise ModelError(f"{folder}: weights file {empty[0].name} is empty (0 bytes)")


class _Hold(logging.Filter):
    """Hold back the root logger's records (open_clip logs there) so a failure can replace them with one line."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


@contextlib.contextmanager
def _held_logs(random_on_purpose: bool):
    """During ``create_model``: drop open_clip's log lines on failure (the ModelError says it in one line);
    on success pass its warnings on, except "initialized randomly" where random weights were asked for."""
    hold = _Hold()
    root = logging.getLogger()
    root.addFilter(hold)
    try:
        yield
    finally:
        root.removeFilter(hold)
    for record in hold.records:  # reached only on success
        if record.levelno >= logging.WARNING and not (random_on_purpose and "No pretrained weights loaded" in record.getMessage()):
            root.handle(record)


def _load_error(spec: str, model_name: str, pretrained: str | None, exc: BaseException) -> ModelError:
    """One line for a failed ``create_model``: what failed, named by spec, file or folder; never a traceback."""
    msg = str(exc)
    first = msg.strip().splitlines()[0][:300] if msg.strip() else exc.__class__.__name__
    if _OFFLINE_HINTS[0] in msg or _OFFLINE_HINTS[1] in msg:
        return _not_cached(spec)
    if "size mismatch" in msg or "Missing key" in msg or "Unexpected key" in msg:
        line = next((ln.strip() for ln in msg.splitlines() if "size mismatch" in ln or "key" in ln), first)
        return ModelError(f"checkpoint does not fit the config of {spec!r}: {line[:300]}")
    if isinstance(exc, AssertionError):  # open_clip asserts while resizing position embeddings to another width
        return ModelError(f"checkpoint does not fit the config of {spec!r}: {first if msg else 'assertion failed in open_clip'}")
    if "Required pretrained weights" in msg:
        where = model_name[len("local-dir:"):] if model_name.startswith("local-dir:") else spec
        return ModelError(f"{where}: no weights were loaded (open_clip found none to read); "
                          "refusing to use a randomly initialised model")
    if isinstance(exc, (FileNotFoundError, ImportError)) or (isinstance(exc, ValueError) and "config" in msg):
        return ModelError(f"cannot load model {spec!r}: {first}")
    if pretrained and os.path.isfile(pretrained):
        return ModelError(f"checkpoint {pretrained} does not load as PyTorch or safetensors weights "
                          f"({exc.__class__.__name__}); is the file complete?")
    if model_name.startswith("local-dir:"):
        return ModelError(f"{model_name[len('local-dir:'):]}: the model folder does not load "
                          f"({exc.__class__.__name__}: {first})")
    return ModelError(f"cannot load model {spec!r}: {first}")


_OFFLINE_HINTS = ("cannot find the requested files in the local cache", "offline mode is enabled")


def _not_cached(spec: str) -> ModelError:
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    why = "HF_HUB_OFFLINE=1 forbids downloading" if offline else "the download failed"
    return ModelError(
        f"model {spec!r} is not in the local Hugging Face cache and {why}; load it once with network access "
        "(or point HF_HOME at a cache that holds it), or use a local checkpoint (NAME:FILE or a local-dir)"
    )


def _tokenizer(spec: str, model_name: str) -> Callable:
    """open_clip's tokenizer for a model; a ``local-dir`` without HF tokenizer files (our checkpoints
    hold only weights and config) uses the config's ``hf_tokenizer_name``."""
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
