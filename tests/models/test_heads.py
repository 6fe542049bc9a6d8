"""Projection heads for every open_clip family, on tiny random configs built offline.

For each family: head(trunk(x)) == encode_*(x) (unnormalised), a one-pass
encode agrees with the separate calls, the model is left unchanged by trunk
passes, and trained heads written back survive save_checkpoint -> load_model.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from helpers.hf import make_hf_clip_dir
from relink.errors import ModelError
from relink.models import load_model
from relink.models.checkpoint import save_checkpoint
from relink.models.heads import Heads, extract_heads, locate_heads, write_heads
from relink.models.registry import weights_fingerprint
from relink.models.trunks import encode_image_trunk, encode_text_trunk, encode_trunks_and_heads

REPORTS = ["no acute cardiopulmonary process", "small left pleural effusion"]

# family id -> (spec or fixture kind, expected family, image path, text path)
FAMILIES = {
    "vit": ("relink-vit-tiny", "vit+text-transformer", "visual.proj", "text_projection"),
    "customtext": ("relink-vit-tiny-customtext", "vit+text-transformer", "visual.proj", "text.text_projection"),
    "timm": ("relink-timm-tiny", "timm+text-transformer", "visual.head.proj", "text_projection"),
    "timm-mlp": ("relink-timm-mlp-tiny", "timm+text-transformer", "visual.head.mlp.fc2", "text_projection"),
    "resnet": ("relink-rn-tiny", "modified-resnet+text-transformer", "visual.attnpool.c_proj", "text_projection"),
    "hf-mlp": ("hf:mlp", "timm+hf-text", "visual.head.proj", "text.proj.2"),
    "hf-linear": ("hf:linear", "timm+hf-text", "visual.head.proj", "text.proj"),
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """Each family loaded once per module (tests that change a model deep-copy it)."""
    cache = {}

    def get(family):
        if family not in cache:
            spec = FAMILIES[family][0]
            if spec.startswith("hf:"):
                spec = str(make_hf_clip_dir(tmp_path_factory.mktemp(family), proj_type=spec[3:]))
            torch.manual_seed(0)
            cache[family] = load_model(spec)
        return cache[family]

    return get


def inputs(lm, seed=0):
    size = lm.preprocess_cfg["size"]
    size = size if isinstance(size, int) else size[0]
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return images, lm.tokenizer(REPORTS)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_head_of_trunk_is_the_embedding(loaded, family):
    lm = loaded(family)
    _, expected_family, image_path, text_path = FAMILIES[family]
    loc = locate_heads(lm.model)
    assert (loc.family, loc.image.path, loc.text.path) == (expected_family, image_path, text_path)

    images, tokens = inputs(lm)
    heads = extract_heads(lm.model)
    with torch.no_grad():
        image_trunk = encode_image_trunk(lm.model, images)
        text_trunk = encode_text_trunk(lm.model, tokens)
        image_emb, text_emb = lm.model.encode_image(images), lm.model.encode_text(tokens)
        assert image_trunk.shape == (2, loc.image.in_features) and text_trunk.shape == (2, loc.text.in_features)
        # Non-trivial embeddings, and the trunk is not already the embedding.
        assert image_emb.norm(dim=-1).min() > 1e-2 and text_emb.norm(dim=-1).min() > 1e-2
        assert heads.image.weight.dtype == torch.float32
        torch.testing.assert_close(heads.image(image_trunk), image_emb, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(heads.text(text_trunk), text_emb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_one_pass_matches_separate_calls_and_leaves_model_unchanged(loaded, family):
    lm = loaded(family)
    images, tokens = inputs(lm, seed=1)
    before = weights_fingerprint(lm.model)
    keys_before = list(lm.model.state_dict())
    with torch.no_grad():
        image_trunk, image_proj, text_trunk, text_proj = encode_trunks_and_heads(lm.model, images, tokens)
        torch.testing.assert_close(image_trunk, encode_image_trunk(lm.model, images))
        torch.testing.assert_close(text_trunk, encode_text_trunk(lm.model, tokens))
        torch.testing.assert_close(image_proj, lm.model.encode_image(images), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(text_proj, lm.model.encode_text(tokens), rtol=1e-5, atol=1e-5)
    assert weights_fingerprint(lm.model) == before and list(lm.model.state_dict()) == keys_before


def test_projection_restored_when_the_forward_fails(loaded):
    lm = loaded("resnet")
    before = weights_fingerprint(lm.model)
    with pytest.raises(RuntimeError):
        encode_image_trunk(lm.model, torch.randn(2, 5, 64, 64))  # wrong channel count
    assert weights_fingerprint(lm.model) == before
    assert locate_heads(lm.model).image.out_features == 32


def _perturb(heads: Heads, seed: int) -> Heads:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in (heads.image, heads.text):
            lin.weight.add_(0.1 * torch.randn(lin.weight.shape, generator=g))
            if lin.bias is not None:
                lin.bias.add_(0.1 * torch.randn(lin.bias.shape, generator=g))
    return heads


@pytest.mark.parametrize("family", list(FAMILIES))
def test_write_back_round_trips_through_a_checkpoint(loaded, family, tmp_path):
    lm = loaded(family)
    model = copy.deepcopy(lm.model)
    images, tokens = inputs(lm, seed=2)
    with torch.no_grad():
        old_image, old_text = model.encode_image(images), model.encode_text(tokens)
        image_trunk, _, text_trunk, _ = encode_trunks_and_heads(model, images, tokens)
    heads = _perturb(extract_heads(model), seed=3)
    write_heads(model, heads)
    with torch.no_grad():
        new_image, new_text = model.encode_image(images), model.encode_text(tokens)
        torch.testing.assert_close(new_image, heads.image(image_trunk), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(new_text, heads.text(text_trunk), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(new_image, old_image, atol=1e-3) and not torch.allclose(new_text, old_text, atol=1e-3)
        again = extract_heads(model)
        torch.testing.assert_close(again.image.weight, heads.image.weight)
        torch.testing.assert_close(again.text.weight, heads.text.weight)

    out = save_checkpoint(model, tmp_path / "ckpt", lm.model_cfg, lm.preprocess_cfg)
    reloaded = load_model(str(out))
    assert reloaded.fingerprint == weights_fingerprint(model)
    assert torch.equal(reloaded.tokenizer(REPORTS), tokens)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.model.encode_image(images), new_image, rtol=0, atol=0)
        torch.testing.assert_close(reloaded.model.encode_text(tokens), new_text, rtol=0, atol=0)


def test_extracted_heads_are_float32_copies(loaded):
    model = copy.deepcopy(loaded("vit").model).half()
    heads = extract_heads(model)
    assert heads.image.weight.dtype == torch.float32 and heads.image.bias is None
    before = weights_fingerprint(model)
    with torch.no_grad():
        heads.image.weight.zero_()
    assert weights_fingerprint(model) == before
    write_heads(model, heads)  # float32 heads into a float16 model keep the model's dtype
    assert model.visual.proj.dtype == torch.float16 and not model.visual.proj.any()


def test_write_heads_refuses_heads_that_do_not_fit(loaded):
    model = copy.deepcopy(loaded("vit").model)
    heads = extract_heads(model)
    with pytest.raises(ModelError, match="shape"):
        write_heads(model, Heads(nn.Linear(3, heads.image.out_features), heads.text))
    biased = nn.Linear(heads.image.in_features, heads.image.out_features)
    with torch.no_grad():
        biased.weight.copy_(heads.image.weight)
        biased.bias.fill_(0.5)
    with pytest.raises(ModelError, match="bias"):
        write_heads(model, Heads(biased, heads.text))
    with torch.no_grad():
        biased.bias.zero_()  # a zero bias is the bias-free projection itself
    write_heads(model, Heads(biased, heads.text))
    assert torch.equal(model.visual.proj.T, heads.image.weight)
    with pytest.raises(ModelError, match="nn.Linear"):
        write_heads(model, Heads(nn.Sequential(biased), heads.text))


TEXT = {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}
VIT = {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16}


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda oc: oc.CLIP(16, VIT, {**TEXT, "proj_type": "none"}), "text tower has no projection"),
        (lambda oc: oc.CustomTextCLIP(16, VIT, {**TEXT, "proj_type": "none"}), "text tower has no projection"),
        (lambda oc: oc.CLIP(16, {"timm_model_name": "test_vit", "timm_proj": "none", "timm_pool": ""}, TEXT), "timm_proj='none'"),
        (lambda oc: oc.CLIP(16, {"timm_model_name": "test_convnext", "timm_proj": "", "timm_pool": "abs_attn"}, TEXT), "attention pool"),
        (lambda oc: nn.Linear(4, 4), "not an open_clip CLIP model"),
    ],
    ids=["clip-text-none", "customtext-none", "timm-none", "timm-attnpool", "not-clip"],
)
def test_unsupported_models_raise_model_error(build, message):
    import open_clip

    with pytest.raises(ModelError, match=message):
        locate_heads(build(open_clip))


def test_timm_classifier_used_as_projection():
    """timm_proj='' with plain pooling: timm's own classifier maps to the embed dim."""
    import open_clip

    model = open_clip.CLIP(16, {"timm_model_name": "test_vit", "timm_proj": "", "timm_pool": "avg"}, TEXT).eval()
    loc = locate_heads(model)
    assert loc.image.path == "visual.trunk.head" and loc.image.bias
    images = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(extract_heads(model).image(encode_image_trunk(model, images)), model.encode_image(images))


def test_hf_text_without_projection_is_refused(tmp_path):
    lm = load_model(str(make_hf_clip_dir(tmp_path, proj_type=None, embed_dim=32, hidden=32)))
    with pytest.raises(ModelError, match="no linear projection"):
        locate_heads(lm.model)


def test_every_ladder_family_has_a_tested_tiny_stand_in():
    """Each family of the real ladder is one FAMILIES covers on a tiny config."""
    from relink.models.ladder import REAL_LADDER

    tested = {family for _, family, _, _ in FAMILIES.values()}
    assert {r.family for r in REAL_LADDER} <= tested
