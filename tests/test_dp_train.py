"""fit_heads, apply_heads, the checks on private/bank data, and `relink mitigate` end to end."""

import json

import numpy as np
import pytest

from dp_fixtures import project, tiny_model_set, toy_heads, toy_set
from relink import embeddings as emb
from relink.cli import main
from relink.dp.apply import apply_heads, heads_fingerprint, load_heads, save_heads
from relink.dp.heads_data import PatientFeatures, check_disjoint, private_split
from relink.dp.train import fit_heads
from relink.errors import RelinkError
from relink.models.heads import Heads

pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
FAST = dict(epochs=2, batch_size=32, lr=1e-2, progress=False)


@pytest.fixture(scope="module")
def toy():
    return toy_set(n_patients=120, per_patient=2, seed=0)


def same(a: Heads, b: Heads) -> bool:
    return heads_fingerprint(a) == heads_fingerprint(b)


def test_fit_heads_is_deterministic_and_returns_the_init_type(toy):
    init = toy_heads(48, 40)
    train, bank = toy.split("train"), toy.split("validate")
    kw = dict(FAST, noise_multiplier=1.0, delta=1e-4)  # sigma given: skips PRV's (slow) sigma search
    h1, r1 = fit_heads(train, bank, init, random_state=0, **kw)
    h2, r2 = fit_heads(train, bank, init, random_state=0, **kw)
    h3, _ = fit_heads(train, bank, init, random_state=1, **kw)
    assert isinstance(h1, Heads) and same(h1, h2) and not same(h1, h3) and not same(h1, init)
    assert r1 == r2
    assert r1["private"] and r1["accountant"] == "prv" and r1["privacy_unit"] == "pair"
    assert r1["n_units"] == len(train) and r1["noise_multiplier"] == 1.0 and len(r1["training_losses"]) == 2
    assert r1["epsilon"] > 0 and r1["rdp_epsilon"] > r1["epsilon"]
    json.dumps(r1)  # JSON-ready


def test_non_private_training_learns_alignment_private_training_is_noisier(toy):
    init = toy_heads(48, 40)
    train, bank = toy.split("train"), toy.split("validate")
    kw = dict(FAST, epochs=8)
    plain, rep = fit_heads(train, bank, init, private=False, **kw)
    assert rep["epsilon"] is None and rep["noise_multiplier"] == 0.0
    assert rep["bank_losses"][-1] < rep["bank_losses"][0]  # fits, and generalises to the held-out bank
    noisy, rep_p = fit_heads(train, bank, init, noise_multiplier=8.0, delta=1e-4, **kw)
    assert rep_p["bank_losses"][-1] > rep["bank_losses"][-1]


def test_patient_unit_samples_patients(toy):
    init = toy_heads(48, 40)
    train = toy.split("train")
    _, rep = fit_heads(train, toy.split("validate"), init, noise_multiplier=1.0, delta=1e-4, privacy_unit="patient", **FAST)
    assert rep["privacy_unit"] == "patient"
    assert rep["n_units"] == train.rows["patient_id"].nunique() and rep["n_pairs"] == len(train)
    ds = PatientFeatures(np.arange(10, dtype=np.float32)[:, None], np.zeros((10, 1)), np.array(list("aabbbcdddd")))
    img, _, mask = ds[3]  # patient "d": four pairs, no padding
    assert mask.tolist() == [1, 1, 1, 1] and sorted(img[:, 0].tolist()) == [6, 7, 8, 9]
    img, _, mask = ds[2]  # patient "c": one pair, three padding rows that count for nothing
    assert mask.tolist() == [1, 0, 0, 0] and img[1:].abs().sum() == 0


def test_bank_overlapping_the_private_set_is_refused(toy):
    train, bank = toy.split("train"), toy.split("validate")
    check_disjoint(train, bank, "patient")  # patient-disjoint splits: fine
    leak = train.subset(np.arange(3))
    with pytest.raises(RelinkError, match="shared pair"):
        check_disjoint(train, leak)
    same_patient = bank.subset(np.arange(len(bank)))
    same_patient.rows.loc[0, "patient_id"] = train.rows["patient_id"].iat[0]
    check_disjoint(train, same_patient, "pair")  # a pair-level guarantee does not care
    with pytest.raises(RelinkError, match="shared patient"):
        check_disjoint(train, same_patient, "patient")
    renamed = train.subset(np.arange(4))
    renamed.rows["pair_id"] = [f"new{i}" for i in range(4)]
    with pytest.raises(RelinkError, match="identical"):
        check_disjoint(train, renamed)
    with pytest.raises(RelinkError, match="overlaps"):
        fit_heads(train, leak, toy_heads(48, 40), epsilon=1.0, delta=1e-4, **FAST)


@pytest.mark.parametrize("eps,delta,match", [(0.0, 1e-5, "epsilon"), (-1.0, 1e-5, "epsilon"), (float("nan"), 1e-5, "epsilon"),
                                             (1.0, 0.0, "delta"), (1.0, 1.0, "delta"), (1.0, 0.05, "1/n")])
def test_bad_budget_is_refused(toy, eps, delta, match):
    with pytest.raises(RelinkError, match=match):
        fit_heads(toy.split("train"), toy.split("validate"), toy_heads(48, 40), epsilon=eps, delta=delta, **FAST)


def test_missing_trunk_empty_split_and_wrong_heads_are_refused(toy, tmp_path):
    bare = emb.EmbeddingSet(toy.rows, toy.image, toy.text)
    with pytest.raises(RelinkError, match="trunk"):
        private_split(bare)
    emb.save(bare, tmp_path / "bare")
    with pytest.raises(RelinkError, match="trunk"):
        emb.load(tmp_path / "bare", require_trunk=True)
    with pytest.raises(RelinkError, match="split == 'train'"):
        private_split(toy.split("test"))
    with pytest.raises(RelinkError, match="heads take"):
        fit_heads(toy.split("train"), toy.split("validate"), toy_heads(30, 40), epsilon=1.0, delta=1e-4, **FAST)


def test_apply_heads_reprojects_cached_trunks_and_records_provenance(toy, tmp_path):
    init = toy_heads(48, 40)
    same_again = apply_heads(toy, init)
    np.testing.assert_allclose(same_again.image, toy.image, atol=1e-6)  # the set's own heads reproduce it
    new = toy_heads(48, 40, seed=5)
    out = apply_heads(toy, new, {"heads": {"epsilon": 0.34}, "model": "ckpt"})
    np.testing.assert_allclose(out.image, project(new.image, toy.image_trunk), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out.text, axis=1), 1.0, atol=1e-5)
    assert out.meta["heads"]["fingerprint"] == heads_fingerprint(new) and out.meta["heads"]["epsilon"] == 0.34
    assert out.meta["model"] == "ckpt" and out.meta["heads"]["base_model"] == "toy"
    assert (out.rows["pair_id"] == toy.rows["pair_id"]).all() and np.array_equal(out.image_trunk, toy.image_trunk)
    save_heads(new, tmp_path / "h.safetensors")
    assert same(load_heads(tmp_path / "h.safetensors"), new)


@pytest.fixture(scope="module")
def model_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    ckpt, es_dir = tiny_model_set(80)
    ext = toy_set(n_patients=10, per_patient=2, seed=3, prefix="x", cohort="external")
    loaded_es = emb.load(es_dir)
    ext_dir = emb.save(emb.EmbeddingSet(ext.rows, loaded_es.image[:20], loaded_es.text[:20], loaded_es.image_trunk[:20],
                                        loaded_es.text_trunk[:20], {"model": str(ckpt)}), root / "external")
    return ckpt, es_dir, ext_dir


def test_cli_mitigate_end_to_end(model_set, tmp_path, capsys):
    from relink.models import load_model
    from relink.models.heads import extract_heads

    ckpt, es_dir, ext_dir = model_set
    out = tmp_path / "dp"
    rc = main(["mitigate", "--embeddings", str(es_dir), "--epsilon", "2", "--delta", "1e-4", "--epochs", "2",
               "--batch-size", "8", "--lr", "0.01", "--apply", str(ext_dir), "--out", str(out)])
    assert rc == 0
    assert "PRV" in capsys.readouterr().out
    rep = json.loads((out / "privacy.json").read_text())
    for key in ("epsilon", "delta", "accountant", "rdp_epsilon", "noise_multiplier", "clip_norm", "sample_rate", "steps",
                "epochs", "privacy_unit", "seed", "training_losses", "provenance"):
        assert key in rep
    heads = load_heads(out / "heads.safetensors")
    reloaded = extract_heads(load_model(str(out / "checkpoint")).model)
    assert same(heads, reloaded) and not same(heads, extract_heads(load_model(str(ckpt)).model))
    for name, src in (("emb", es_dir), ("external", ext_dir)):
        new, old = emb.load(out / "embeddings" / name), emb.load(src)
        np.testing.assert_allclose(new.image, project(heads.image, old.image_trunk), atol=1e-5)
        assert new.meta["model"] == str(out / "checkpoint") and new.meta["heads"]["accountant"] == "prv"
        assert (new.rows["pair_id"] == old.rows["pair_id"]).all()


def test_cli_mitigate_bad_input_exits_2_with_one_line(model_set, tmp_path, capsys):
    ckpt, es_dir, _ = model_set
    base = ["mitigate", "--embeddings", str(es_dir), "--out", str(tmp_path / "o")]
    assert main(base + ["--epsilon", "1", "--delta", "0.5"]) == 2
    assert main(base + ["--epsilon", "1", "--delta", "1e-4", "--bank", str(es_dir)]) == 2  # bank = private set
    assert main(base + ["--delta", "1e-4"]) == 2  # no epsilon
    assert main(base + ["--epsilon", "1", "--delta", "1e-4", "--model", "relink-vit-tiny"]) == 2  # other weights
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("relink mitigate: error:") for line in err)
    assert "overlaps" in err[1] and "do not reproduce" in err[3]
    assert not (tmp_path / "o").exists()
