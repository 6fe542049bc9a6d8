"""Model specs (names, files, folders, hub) and the default model ladder, offline."""

from __future__ import annotations

import json
import logging
import time

import pytest
import torch

from relink.errors import ModelError, RelinkError
from relink.models import load_model, parse_spec, register_project_configs
from relink.models.checkpoint import save_checkpoint
from relink.models.ladder import CHEXZERO_PREPROCESS, LADDERS, REAL_LADDER, Rung, resolve_ladder
from relink.models.registry import weights_fingerprint

SMALL = "relink-vit-tiny-customtext"  # the smallest shipped config


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return load_model(SMALL)


def test_parse_spec_forms(tmp_path):
    assert parse_spec("ViT-B-16:openai") == ("ViT-B-16", "openai")
    assert parse_spec("relink-vit-tiny") == ("relink-vit-tiny", None)
    assert parse_spec("hf-hub:org/repo") == ("hf-hub:org/repo", None)
    assert parse_spec(str(tmp_path)) == (f"local-dir:{tmp_path}", None)
    with pytest.raises(ModelError):
        parse_spec("  ")


def test_project_configs_registered_once():
    import open_clip
    from open_clip import factory

    names = register_project_configs()
    assert {"relink-vit-tiny", "relink-timm-tiny", "relink-timm-mlp-tiny", "relink-rn-tiny", SMALL} <= set(names)
    assert set(names) <= set(open_clip.list_models())
    n_paths = len(factory._MODEL_CONFIG_PATHS)
    register_project_configs()
    assert len(factory._MODEL_CONFIG_PATHS) == n_paths


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ModelError, match="did you mean: .*relink-vit-tiny"):
        load_model("relink-vit-tinny")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_name_with_local_weights_file(small, tmp_path, suffix):
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in small.model.state_dict().items()}
    if suffix == ".pt":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    torch.manual_seed(1)  # a different random init, so equal fingerprints mean the file was read
    assert load_model(f"{SMALL}:{path}").fingerprint == small.fingerprint


def test_open_clip_train_checkpoint_loads(small, tmp_path):
    """The ladder's fine-tuned rung: open_clip_train's epoch_K.pt holds {"state_dict": ...}."""
    path = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "name": "mimic-ft", "state_dict": small.model.state_dict(), "optimizer": {}}, path)
    torch.manual_seed(2)
    assert load_model(f"{SMALL}:{path}").fingerprint == small.fingerprint


def test_checkpoint_that_does_not_fit(small, tmp_path):
    path = tmp_path / "other.pt"
    torch.save(small.model.state_dict(), path)
    with pytest.raises(ModelError, match="does not fit"):
        load_model(f"relink-vit-tiny:{path}")


def test_missing_weights_file():
    with pytest.raises(ModelError, match="not found"):
        load_model(f"{SMALL}:no/such/weights.pt")


def test_local_dir_and_bare_dir(small, tmp_path):
    out = save_checkpoint(small.model, tmp_path / "ckpt", small.model_cfg, small.preprocess_cfg)
    for spec in (f"local-dir:{out}", str(out)):
        lm = load_model(spec)
        assert lm.fingerprint == small.fingerprint
        assert lm.model_cfg["embed_dim"] == small.model_cfg["embed_dim"]


def test_model_folder_without_weights_is_an_error_not_a_random_model(small, tmp_path, caplog):
    """open_clip builds a random model and only logs "No pretrained weights loaded"; relink refuses."""
    out = save_checkpoint(small.model, tmp_path / "ckpt", small.model_cfg, small.preprocess_cfg)
    (out / "open_clip_model.safetensors").unlink()
    for spec in (str(out), f"local-dir:{out}"):
        with pytest.raises(ModelError, match=f"^{out}: no weights file"):
            load_model(spec)
    torch.save(small.model.state_dict(), out / "weights.pt")  # a .pt file is not read from a folder
    with pytest.raises(ModelError, match=r"weights\.pt is not read from a folder: give NAME:"):
        load_model(str(out))
    (out / "open_clip_model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="is empty"):
        load_model(str(out))
    (out / "open_clip_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match=f"^{out}: the model folder does not load"):
        load_model(str(out))


def test_named_weights_that_do_not_load_are_errors_naming_the_file(small, tmp_path, caplog):
    cases = {"empty.pt": b"", "garbage.pt": b"not a pickle" * 10, "garbage.safetensors": b"\xff" * 100}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save({}, tmp_path / "nothing.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    for name in [*cases, "nothing.pt", "list.pt"]:
        path = tmp_path / name
        with pytest.raises(ModelError) as err:
            load_model(f"{SMALL}:{path}")
        msg = str(err.value)
        assert str(path) in msg and "\n" not in msg and len(msg) < 300, msg
    with pytest.raises(ModelError, match="is a folder"):
        load_model(f"{SMALL}:{tmp_path}")
    with pytest.raises(ModelError, match="model folder not found"):
        load_model(str(tmp_path / "no" / "such" / "folder"))
    with pytest.raises(ModelError, match="not a known tag"):
        load_model(f"{SMALL}:no-such-tag")  # open_clip logs an ERROR line before it raises
    # open_clip's own log lines about the failure are not printed on top of the one-line error
    assert not [r for r in caplog.records if r.name == "root" and r.levelno >= logging.WARNING]


def test_bare_name_is_random_on_purpose_and_quiet(caplog):
    caplog.set_level(logging.WARNING)
    torch.manual_seed(5)
    a = load_model(SMALL)
    torch.manual_seed(6)
    assert load_model(SMALL).fingerprint != a.fingerprint  # really a fresh random init
    assert not any("initialized randomly" in r.getMessage() for r in caplog.records)


def test_hf_hub_offline_without_cache_fails_fast():
    start = time.monotonic()
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        load_model("hf-hub:relink-tests/no-such-model")
    assert time.monotonic() - start < 20  # not the ~50 s download retry


# ---------------------------------------------------------------- ladder


def test_real_ladder_goes_from_general_to_chest_specific():
    assert [r.name for r in REAL_LADDER] == ["clip", "biomedclip", "chexzero", "mimic-ft"]
    assert LADDERS["mimic"] == LADDERS["chexpert-plus"] == REAL_LADDER
    by_name = {r.name: r for r in REAL_LADDER}
    assert by_name["clip"].spec == "ViT-B-16:openai"
    assert by_name["biomedclip"].spec == "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    assert by_name["biomedclip"].requires == ("transformers",)
    assert by_name["chexzero"].spec.startswith("ViT-B-32-quickgelu:")


def test_openai_architectures_need_quickgelu():
    import open_clip

    assert open_clip.get_model_config("ViT-B-32-quickgelu").get("quick_gelu") is True
    assert not open_clip.get_model_config("ViT-B-32").get("quick_gelu", False)


def test_resolve_real_ladder(tmp_path):
    ckpt, ft = tmp_path / "best.pt", tmp_path / "epoch_10.pt"
    ckpt.touch(), ft.touch()
    with pytest.raises(RelinkError, match=r"'chexzero' needs \$CHEXZERO_CKPT"):
        resolve_ladder("mimic", env={})
    with pytest.raises(RelinkError, match="does not exist"):
        resolve_ladder("mimic", env={"CHEXZERO_CKPT": str(tmp_path / "missing.pt"), "MIMIC_FT_CKPT": str(ft)})
    rungs = resolve_ladder("mimic", env={"CHEXZERO_CKPT": str(ckpt), "MIMIC_FT_CKPT": str(ft)})
    assert [r.spec for r in rungs][2:] == [f"ViT-B-32-quickgelu:{ckpt}", f"ViT-B-16-quickgelu:{ft}"]
    rungs = resolve_ladder("mimic", env={"CHEXZERO_CKPT": str(ckpt), "MIMIC_FT_CKPT": str(ft), "MIMIC_FT_MODEL": "ViT-B-32"})
    assert rungs[3].spec == f"ViT-B-32:{ft}"


def test_resolve_with_overrides(tmp_path):
    rungs = resolve_ladder("chexpert-plus", {"chexzero": None, "mimic-ft": str(tmp_path), "extra": "ViT-B-32:openai"}, env={})
    assert [(r.name, r.spec) for r in rungs] == [
        ("clip", "ViT-B-16:openai"),
        ("biomedclip", REAL_LADDER[1].spec),
        ("mimic-ft", str(tmp_path)),
        ("extra", "ViT-B-32:openai"),
    ]
    with pytest.raises(RelinkError, match="unknown ladder profile"):
        resolve_ladder("mimc")


def test_synthetic_ladder_comes_from_overrides(tmp_path):
    with pytest.raises(RelinkError, match="relink train"):
        resolve_ladder("synthetic")
    weak, strong = tmp_path / "weak", tmp_path / "strong"
    weak.mkdir(), strong.mkdir()
    rungs = resolve_ladder("synthetic", {"weak": str(weak), "strong": str(strong)})
    assert [(r.name, r.spec) for r in rungs] == [("weak", str(weak)), ("strong", str(strong))]
    with pytest.raises(RelinkError, match="does not exist"):
        resolve_ladder("synthetic", {"weak": str(tmp_path / "gone")})


@pytest.fixture
def openai_layout(tmp_path):
    """A tiny config whose head counts follow OpenAI's width // 64 rule, with and without QuickGELU."""
    import open_clip

    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 128, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 1},
    }
    for name, quick in (("relink-test-openai-layout", True), ("relink-test-openai-layout-gelu", False)):
        (tmp_path / f"{name}.json").write_text(json.dumps({**cfg, "quick_gelu": quick}))
        open_clip.add_model_config(tmp_path / f"{name}.json")
    return "relink-test-openai-layout"


def test_chexzero_style_checkpoint_needs_no_key_mapping(openai_layout, tmp_path):
    """CheXzero saves an OpenAI-CLIP state dict (fp16 on GPU); open_clip loads it as is."""
    import open_clip
    from open_clip.model import build_model_from_openai_state_dict

    torch.manual_seed(3)
    source = open_clip.create_model(openai_layout)
    state = {k: v.half() for k, v in source.state_dict().items()}
    path = tmp_path / "best_64_5e-05_original_22000_0.864.pt"
    torch.save(state, path)

    # open_clip's own importer for OpenAI-layout weights is the reference.
    reference = build_model_from_openai_state_dict(dict(state), quick_gelu=True, cast_dtype=None).float().eval()
    rung = Rung("chexzero", f"{openai_layout}:{path}", "vit+text-transformer", "tiny", load_kwargs=CHEXZERO_PREPROCESS)
    lm = load_model(rung.spec, **dict(rung.load_kwargs))  # how the paper loads a resolved rung
    assert weights_fingerprint(lm.model) == weights_fingerprint(reference)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    tokens = lm.tokenizer(["no acute process", "cardiomegaly"])
    with torch.no_grad():
        torch.testing.assert_close(lm.model.encode_image(images), reference.encode_image(images))
        torch.testing.assert_close(lm.model.encode_text(tokens), reference.encode_text(tokens))
        # The same weights under GELU load without complaint but embed differently.
        gelu = load_model(f"{openai_layout}-gelu:{path}").model
        assert not torch.allclose(gelu.encode_image(images), reference.encode_image(images), atol=1e-4)
    assert lm.preprocess_cfg["resize_mode"] == "longest"
    assert lm.preprocess_cfg["mean"] == pytest.approx((0.39799, 0.39799, 0.39799), abs=1e-5)
    assert lm.preprocess_cfg["std"] == pytest.approx((0.32721, 0.32721, 0.32721), abs=1e-5)
