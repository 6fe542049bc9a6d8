"""Write a model as an ordinary open_clip ``local-dir:`` checkpoint folder: ``open_clip_config.json``
(``{"model_cfg": ..., "preprocess_cfg": ...}``) and ``open_clip_model.safetensors``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..io import atomic_dir

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"


def save_checkpoint(
    model,
    out_dir: str | os.PathLike,
    model_cfg: dict[str, Any],
    preprocess_cfg: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and config atomically; ``extra`` goes into ``relink.json`` beside them."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    pp = {k: (list(v) if isinstance(v, tuple) else v) for k, v in (preprocess_cfg or {}).items()}
    with atomic_dir(out_dir) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": pp}, indent=2, sort_keys=True) + "\n")
        if extra:
            (tmp / "relink.json").write_text(json.dumps(extra, indent=2, sort_keys=True, default=str) + "\n")
    return Path(out_dir)
