"""A tiny BiomedCLIP-style open_clip model (HF BERT text tower) built offline.

open_clip's HF text tower reads its architecture with
``AutoConfig.from_pretrained(text_cfg["hf_model_name"])`` (and its weights
with ``AutoModel.from_pretrained`` when the folder holds a checkpoint), and
``get_tokenizer("local-dir:DIR")`` always reads the tokenizer from DIR
itself. Both accept a local folder, so one folder holding the tokenizer
files, ``open_clip_config.json``, open_clip's weights and a ``text-tower/``
BERT folder (``hf_model_name`` pointing there, ``hf_tokenizer_name`` at DIR) is
a complete, offline HF-text model: ``relink.models.load_model(str(dir))``.
"""

from __future__ import annotations

import json
from pathlib import Path

# Enough word pieces to tokenize short report sentences into distinct ids.
_WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] no acute cardiopulmonary process the heart is normal size "
    "effusion pleural left right lung opacity small large there a of and with stable"
).split() + list("abcdefghijklmnopqrstuvwxyz.,-")


def make_hf_clip_dir(
    root: Path,
    proj_type: str | None = "mlp",
    embed_dim: int = 24,
    hidden: int = 32,
    pooler: str = "cls_last_hidden_state_pooler",
) -> Path:
    """Write a tiny timm-ViT + BERT ``local-dir`` model into ``root`` (created); return it.

    ``proj_type`` is open_clip's ``hf_proj_type``: ``"mlp"`` (BiomedCLIP),
    ``"linear"``, or ``None`` with ``hidden == embed_dim`` for an Identity
    projection.
    """
    import open_clip
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(_WORDS) + "\n")
    BertTokenizer(str(vocab), do_lower_case=True).save_pretrained(str(root))
    config = BertConfig(
        vocab_size=len(_WORDS),
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    # open_clip builds the text tower with AutoModel.from_pretrained(hf_model_name) when the folder holds
    # weights, so the BERT weights are saved too, in a subfolder (open_clip would read a model.safetensors
    # beside its config as its own checkpoint).
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(root / "text-tower"))
    text_cfg = {
        "hf_model_name": str(root / "text-tower"),
        "hf_tokenizer_name": str(root),
        "hf_proj_type": proj_type,
        "hf_pooler_type": pooler,
        "context_length": 32,
    }
    model_cfg = {
        "embed_dim": embed_dim,
        # BiomedCLIP's image tower layout (timm ViT, token pooling, linear projection) at timm's
        # tiny test size; a timm ViT must be built at its default image size (see PITFALLS).
        "vision_cfg": {"timm_model_name": "test_vit", "timm_model_pretrained": False, "timm_pool": "",
                       "timm_proj": "linear", "image_size": 160},
        "text_cfg": text_cfg,
    }
    (root / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}, indent=2))
    # relink refuses a model folder without weights (a randomly initialised model would measure nothing),
    # so the fixture saves the weights of one seeded random initialisation, as a released folder would.
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{root}")
    torch.save(model.state_dict(), root / "open_clip_pytorch_model.bin")
    return root
