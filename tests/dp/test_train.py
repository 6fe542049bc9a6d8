"""fit_heads (secret and reproducible noise), apply_heads, and the checks on private/bank data."""

import json

import numpy as np
import pytest

from helpers.sets import project, toy_heads, toy_set
from relink import embeddings as emb
from relink.dp.apply import apply_heads, heads_fingerprint, load_heads, save_heads
from relink.dp.heads_data import PatientFeatures, check_bank_outside, check_disjoint, private_split
from relink.dp.spec import MitigationSpec, NOT_FOR_RELEASE
from relink.dp.train import fit_heads as _fit
from relink.errors import RelinkError
from relink.models.heads import Heads

pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
FAST = dict(epochs=2, batch_size=32, lr=1e-2, temperature=0.07)


def fit_heads(train, bank, init, **kw):
    return _fit(train, bank, init, MitigationSpec(**{**FAST, **kw}), progress=False)


@pytest.fixture(scope="module")
def toy():
    return toy_set(n_patients=120, per_patient=2, seed=0)


def same(a: Heads, b: Heads) -> bool:
    return heads_fingerprint(a) == heads_fingerprint(b)


def test_reproducible_noise_replays_the_run_and_says_it_is_not_for_release(toy):
    init = toy_heads(48, 40)
    train, bank = toy.split("train"), toy.split("validate")
    kw = dict(noise_multiplier=1.0, delta=1e-4)  # sigma given: skips PRV's (slow) sigma search
    h1, r1 = fit_heads(train, bank, init, reproducible_noise=0, **kw)
    h2, r2 = fit_heads(train, bank, init, reproducible_noise=0, **kw)
    h3, _ = fit_heads(train, bank, init, reproducible_noise=1, **kw)
    assert isinstance(h1, Heads) and same(h1, h2) and not same(h1, h3) and not same(h1, init)
    assert r1 == r2
    assert r1["noise_seed"] == 0 and r1["for_release"] is False and r1["release_note"] == NOT_FOR_RELEASE
    assert r1["private"] and r1["accountant"] == "prv" and r1["privacy_unit"] == "pair"
    assert r1["n_units"] == len(train) and r1["noise_multiplier"] == 1.0 and len(r1["training_losses"]) == 2
    assert r1["epsilon"] > 0 and r1["rdp_epsilon"] > r1["epsilon"]
    json.dumps(r1, allow_nan=False)  # valid JSON


def test_default_noise_is_secret_different_every_run_and_never_reported(toy, monkeypatch):
    import secrets

    drawn = []

    def spy(bits):
        drawn.append(secrets.SystemRandom().getrandbits(bits))  # still the OS's entropy
        return drawn[-1]

    monkeypatch.setattr("relink.dp.train.secrets.randbits", spy)
    init = toy_heads(48, 40)
    train, bank = toy.split("train"), toy.split("validate")
    h1, r1 = fit_heads(train, bank, init, noise_multiplier=1.0, delta=1e-4)
    h2, r2 = fit_heads(train, bank, init, noise_multiplier=1.0, delta=1e-4)
    assert len(drawn) == 2 and drawn[0] != drawn[1]
    assert not same(h1, h2)  # nobody can replay it: not even the same process with the same data
    assert r1["noise_seed"] == "secret" and r1["for_release"] is True and r1["release_note"] is None
    for seed, rep in zip(drawn, (r1, r2)):
        text = json.dumps(rep)
        assert str(seed) not in text and hex(seed)[2:] not in text


def test_non_private_training_learns_alignment_private_training_is_noisier(toy):
    init = toy_heads(48, 40)
    train, bank = toy.split("train"), toy.split("validate")
    kw = dict(epochs=8)
    plain, rep = fit_heads(train, bank, init, private=False, **kw)
    assert rep["epsilon"] is None and rep["noise_multiplier"] == 0.0 and rep["for_release"] is False
    assert rep["bank_losses"][-1] < rep["bank_losses"][0]  # fits, and generalises to the held-out bank
    noisy, rep_p = fit_heads(train, bank, init, noise_multiplier=8.0, delta=1e-4, reproducible_noise=0, **kw)
    assert rep_p["bank_losses"][-1] > rep["bank_losses"][-1]


def test_patient_unit_samples_patients(toy):
    init = toy_heads(48, 40)
    train = toy.split("train")
    _, rep = fit_heads(train, toy.split("validate"), init, noise_multiplier=1.0, delta=1e-4, privacy_unit="patient")
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
    with pytest.raises(RelinkError, match="overlaps") as err:
        fit_heads(train, leak, toy_heads(48, 40), epsilon=1.0, delta=1e-4)
    assert not any(pid in str(err.value) for pid in leak.rows["pair_id"])  # counts, never identifiers


def test_bank_overlapping_the_evaluated_rows_is_refused_by_pair_and_by_patient(toy):
    bank, test = toy.split("validate"), toy.split("test")
    check_bank_outside(bank, [("the test rows", test)])  # patient-disjoint splits: fine
    with pytest.raises(RelinkError, match=r"overlaps the apply set: 3 shared pair\(s\)"):
        check_bank_outside(bank, [("the test rows", test), ("the apply set", bank.subset(np.arange(3)))])
    moved = test.subset(np.arange(len(test)))
    moved.rows.loc[:1, "patient_id"] = bank.rows["patient_id"].iat[0]  # two test pairs of a bank patient
    with pytest.raises(RelinkError, match=r"0 shared pair\(s\), 1 shared patient\(s\)") as err:
        check_bank_outside(bank, [("the apply set", moved)])
    assert bank.rows["patient_id"].iat[0] not in str(err.value)  # counts, never identifiers


@pytest.mark.parametrize("kw,match", [(dict(epsilon=0.0, delta=1e-5), "--epsilon must be"),
                                      (dict(epsilon=-1.0, delta=1e-5), "--epsilon must be"),
                                      (dict(epsilon=float("nan"), delta=1e-5), "--epsilon must be"),
                                      (dict(epsilon=1e6, delta=1e-5), r"--epsilon must be .*<= 20"),
                                      (dict(epsilon=1.0, delta=0.0), "--delta must be"),
                                      (dict(epsilon=1.0, delta=1.0), "--delta must be"),
                                      (dict(epsilon=1.0), "--epsilon and --delta are required"),
                                      (dict(private=False, epsilon=1.0), "drop --epsilon"),
                                      (dict(epsilon=1.0, delta=1e-5, lr=-1.0), "--lr must be"),
                                      (dict(epsilon=1.0, delta=1e-5, temperature=0.0), "--temperature must be"),
                                      (dict(epsilon=1.0, delta=1e-5, clip_norm=float("inf")), "--clip-norm must be"),
                                      (dict(epsilon=1.0, delta=1e-5, epochs=0), "--epochs must be"),
                                      (dict(epsilon=1.0, delta=1e-5, batch_size=0), "--batch-size must be"),
                                      (dict(epsilon=1.0, delta=1e-5, bank_size=0), "--bank-size must be"),
                                      (dict(epsilon=1.0, delta=1e-5, bank_size=-5), "--bank-size must be"),
                                      (dict(epsilon=1.0, delta=1e-5, privacy_unit="study"), "--privacy-unit"),
                                      (dict(epsilon=1.0, delta=1e-5, reproducible_noise=-1), "--reproducible-noise")])
def test_bad_options_are_refused_by_the_spec_naming_the_flag(kw, match):
    with pytest.raises(RelinkError, match=match):
        MitigationSpec(**kw)


def test_delta_above_one_over_ten_n_names_n_the_unit_the_largest_delta_and_the_patient_alternative(toy):
    train, bank = toy.split("train"), toy.split("validate")
    n, patients = len(train), train.rows["patient_id"].nunique()
    assert patients < n  # two pairs per patient
    fit_heads(train, bank, toy_heads(48, 40), epsilon=1.0, delta=1.0 / (10 * n), epochs=1)  # the limit itself holds
    delta = 1.0 / (10 * n - 1)  # just above 1/(10 n) pairs, below 1/(10 patients)
    assert delta < 1.0 / n  # the old rule (below 1/n) would have let it through
    with pytest.raises(RelinkError) as err:
        fit_heads(train, bank, toy_heads(48, 40), epsilon=1.0, delta=delta)
    msg = str(err.value)
    assert f"n = {n} private pairs" in msg and f"largest delta allowed is {1 / (10 * n):.3g}" in msg
    assert "--privacy-unit patient" in msg and f"{patients} patients" in msg and "would be allowed" in msg
    delta = 1.0 / (10 * patients - 1)  # not within the rule for patients either
    with pytest.raises(RelinkError, match=f"at most {1 / (10 * patients):.3g}"):
        fit_heads(train, bank, toy_heads(48, 40), epsilon=1.0, delta=delta)
    with pytest.raises(RelinkError, match=f"n = {patients} private patients") as err:
        fit_heads(train, bank, toy_heads(48, 40), epsilon=1.0, delta=delta, privacy_unit="patient")
    assert "--privacy-unit patient" not in str(err.value)


def test_default_delta_is_a_round_value_within_the_rule():
    from relink.dp.accounting import default_delta, max_delta

    for n in (1, 7, 240, 6000, 59_999, 60_000, 200_000):
        d = default_delta(n)
        assert d <= 1 / (10 * n) and d == max_delta(n) or d < max_delta(n)
        assert d > 1 / (10 * n) / 10  # rounded down by less than a factor 10
        assert float(f"{d:.0e}") == pytest.approx(d)  # one significant digit
    assert default_delta(6000) == pytest.approx(1e-5) and default_delta(60_000) == pytest.approx(1e-6)


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
        fit_heads(toy.split("train"), toy.split("validate"), toy_heads(30, 40), epsilon=1.0, delta=1e-4)


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
