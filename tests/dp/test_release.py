"""What a DP run may release: the start and trunk records, for_release and its reason, a release folder with
nothing derived from the private rows, and the memorising start that made the old release a broken promise."""

import json
import math

import numpy as np
import pytest
import torch

from helpers.sets import tiny_model_set, toy_heads, toy_set
from relink import embeddings as emb
from relink.api.mitigate import mitigate
from relink.dp import release
from relink.dp.audit import dp_tpr_limit, pair_scores, threshold_attack
from relink.dp.spec import MitigationSpec
from relink.dp.start import random_heads
from relink.dp.train import fit_heads
from relink.errors import RelinkError
from relink.models import trained_on

pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
QUICK = dict(epochs=2, batch_size=8, lr=1e-2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny random-init model, the same weights recorded as trained on the set's train rows, and the set."""
    from relink.models import load_model
    from relink.models.checkpoint import save_checkpoint

    ckpt, es_dir = tiny_model_set(80)
    es = emb.load(es_dir)
    loaded = load_model(str(ckpt))
    memorised = save_checkpoint(loaded.model, tmp_path_factory.mktemp("m") / "trained-here", loaded.model_cfg,
                                loaded.preprocess_cfg,
                                extra={"trained_on": trained_on.private(es.split("train").rows["pair_id"])})
    return ckpt, memorised, es


def test_records_of_specs():
    assert trained_on.of_spec("relink-vit-tiny") == "random-init"
    assert trained_on.of_spec("hf-hub:org/model") == "public:hf-hub:org/model"
    assert trained_on.of_spec("ViT-B-16:openai") == "public:ViT-B-16:openai"
    assert trained_on.of_spec("ViT-B-32:/data/weights.pt") is None  # a local file without a record says nothing
    assert trained_on.rows_fingerprint(["b", "a"]) == trained_on.rows_fingerprint(["a", "b"])
    assert trained_on.rows_fingerprint(["a"]) != trained_on.rows_fingerprint(["a", "b"])
    assert not trained_on.is_independent("public:") and not trained_on.is_independent("private:abc")


def test_heads_trained_on_the_private_rows_are_not_for_release_and_say_why(tiny):
    ckpt, memorised, es = tiny
    spec = MitigationSpec(epsilon=2.0, delta=1e-4, **QUICK)
    # the old behaviour: the trunk (and its heads) learned on these very rows
    result = mitigate(es, spec, model=str(memorised))
    rep = result.report
    assert rep["for_release"] is False and rep["trained_on"]["trunk"].startswith("private:")
    assert rep["release_reason"].startswith("The trunk was trained on these rows without DP")
    assert "epsilon covers the heads' training given that trunk, not the model" in rep["release_reason"]
    assert rep["release_reason"].count(".") == 1  # one sentence
    # a public trunk, heads started from a model trained on these rows: the start is named
    result = mitigate(es, spec, model=str(ckpt), init=str(memorised))
    rep = result.report
    assert rep["for_release"] is False and rep["trained_on"]["start"] == rep["private_rows"]
    assert "starting heads was trained on these rows" in rep["release_reason"] and "given that start" in rep["release_reason"]


def test_a_random_start_on_a_declared_public_trunk_is_for_release(tiny, tmp_path):
    from relink.models import load_model
    from relink.models.checkpoint import save_checkpoint

    _, memorised, es = tiny
    loaded = load_model(str(memorised))
    silent = save_checkpoint(loaded.model, tmp_path / "silent", loaded.model_cfg, loaded.preprocess_cfg)  # no record
    spec = MitigationSpec(epsilon=2.0, delta=1e-4, **QUICK)
    rep = mitigate(es, spec, model=str(silent)).report
    assert rep["for_release"] is False and rep["trained_on"]["trunk"] == "not recorded"
    assert "records nothing about its training data" in rep["release_reason"]
    rep = mitigate(es, spec, model=str(silent), trunk_trained_on="public:tiny-demo").report
    assert rep["for_release"] is True and rep["trained_on"] == {"start": "random-init", "trunk": "public:tiny-demo"}
    assert "covers the released heads" in rep["release_reason"] and "no guarantee" in rep["bank_note"]
    with pytest.raises(RelinkError, match="cannot overrule"):
        mitigate(es, spec, model=str(memorised), trunk_trained_on="public:tiny-demo")
    with pytest.raises(RelinkError, match="--trunk-trained-on must be"):
        mitigate(es, spec, model=str(silent), trunk_trained_on="private:abc")


def _needles(rows: emb.EmbeddingSet, losses) -> list[bytes]:
    """What the release must not contain: private rows' ids, their vectors (as stored), their losses."""
    out = []
    for col in ("pair_id", "patient_id"):
        out += [json.dumps(str(v)).encode() for v in rows.rows[col]]  # as JSON or a table would hold them
    for arr in (rows.image, rows.text, rows.image_trunk, rows.text_trunk):
        a = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
        out += [a[i].tobytes()[:32] for i in range(len(a))]  # any one row, raw
    for x in losses:
        if x is not None:
            out += [repr(x).encode(), json.dumps(x).encode()]
    return out


def test_the_release_folder_holds_nothing_derived_from_the_private_rows(tiny, tmp_path):
    ckpt, _, es = tiny
    out, study = tmp_path / "release", tmp_path / "study"
    result = mitigate(es, MitigationSpec(epsilon=2.0, delta=1e-4, **QUICK), model=str(ckpt), out=out, study=study)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "heads.safetensors" in files and "privacy.json" in files
    assert not [f for f in files if f.startswith("embeddings/")]  # re-projected private rows: study only
    assert any(f.startswith("checkpoint/") for f in files)  # the trunk is random-init: releasable as a model
    record = json.loads((out / "privacy.json").read_text())
    assert set(record) - {"provenance"} == set(release.RELEASE_FIELDS)
    for field in ("training_losses", "n_units", "n_pairs", "expected_batch_size", "empty_batches", "n_bank",
                  "private_rows", "bank_losses"):
        assert field not in record
    train = es.split("train")
    counts = [str(len(train)), str(train.rows["patient_id"].nunique())]
    needles = _needles(train, result.report["training_losses"])
    for f in out.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert not [n for n in needles if n in data], f
    for key, value in record.items():  # no exact private count as a number of its own
        assert not (key.startswith("n_") and str(value) in counts)
    # what the scan looks for is really there in the study folder (so the scan can fail)
    study_bytes = b"".join(p.read_bytes() for p in study.rglob("*") if p.is_file())
    assert any(n in study_bytes for n in needles)
    full = json.loads((study / "privacy.json").read_text())
    assert full["n_units"] == len(train) and "not for release" in full["study_note"]


def test_a_weights_file_answers_from_the_record_beside_it_and_a_declaration_cannot_overrule_it(tmp_path):
    """Review finding: NAME:FILE ignored the relink.json beside the file, so --trunk-trained-on public:x passed over
    a trunk recorded as trained on the private rows; a damaged record let it pass too."""
    from relink.dp.start import trunk_record

    weights = tmp_path / "open_clip_model.safetensors"
    weights.write_bytes(b"not read here")
    spec = f"relink-vit-tiny:{weights}"
    assert trained_on.of_spec(spec) is None and trunk_record(spec, "public:x") == "public:x"  # no record: may be declared
    (tmp_path / "relink.json").write_text(json.dumps({"trained_on": trained_on.private(["p1", "p2"])}))
    assert trained_on.of_spec(spec) == trained_on.private(["p1", "p2"])
    with pytest.raises(RelinkError, match="cannot overrule"):
        trunk_record(spec, "public:x")
    for damaged in ("{not json", json.dumps({"trained_on": "private:"}), json.dumps(["trained_on"])):
        (tmp_path / "relink.json").write_text(damaged)
        assert trained_on.of_spec(spec) == trained_on.UNREADABLE
        with pytest.raises(RelinkError, match="cannot overrule"):
            trunk_record(spec, "public:x")


def test_the_release_never_holds_a_fingerprint_of_the_private_rows(tiny, tmp_path):
    """Review finding: a hash of the training rows' ids is an exact membership test for an adversary who knows every
    row but one; the release says that a start or trunk saw private rows, never which."""
    _, memorised, es = tiny
    out, study = tmp_path / "release", tmp_path / "study"
    mitigate(es, MitigationSpec(epsilon=2.0, delta=1e-4, **QUICK), model=str(memorised), out=out, study=study)
    fingerprint = trained_on.rows_fingerprint(es.split("train").rows["pair_id"]).encode()
    assert not [p for p in out.rglob("*") if p.is_file() and fingerprint in p.read_bytes()]
    assert fingerprint in (study / "privacy.json").read_bytes()  # the study keeps it (so the scan can fail)
    record = json.loads((out / "privacy.json").read_text())
    assert record["trained_on"]["trunk"] == release.UNDISCLOSED and record["for_release"] is False
    assert (out / "NOT_FOR_RELEASE.txt").read_text().strip() == record["release_reason"]


def test_a_private_trunk_keeps_the_checkpoint_out_of_the_release(tiny, tmp_path):
    _, memorised, es = tiny
    out, study = tmp_path / "release", tmp_path / "study"
    mitigate(es, MitigationSpec(private=False, **QUICK), model=str(memorised), out=out, study=study)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "NOT_FOR_RELEASE.txt", "heads.safetensors", "privacy.json"]
    assert (study / "checkpoint" / "relink.json").is_file()
    # the new model saw the private rows: a later run cannot take it as an independent start
    assert trained_on.of_folder(study / "checkpoint") == trained_on.private(es.split("train").rows["pair_id"])


def test_release_status_reasons():
    spec = MitigationSpec(epsilon=1.0, delta=1e-5)
    rows = "private:abc"
    assert release.status(spec, "random-init", "public:x", rows)[0] is True
    ok, why = release.status(spec, "random-init", "private:abc", rows)
    assert not ok and "trunk was trained on these rows" in why
    ok, why = release.status(spec, "private:def", "public:x", rows)
    assert not ok and "without DP on private rows (private:def)" in why
    ok, why = release.status(spec, "private:abc", "not recorded", rows)
    assert not ok and "trunk" in why and "starting heads" in why and "given that trunk and start" in why
    assert not release.status(spec.but(reproducible_noise=1), "random-init", "public:x", rows)[0]
    assert not release.status(MitigationSpec(private=False), "random-init", "public:x", rows)[0]


def _memorise(train: emb.EmbeddingSet, bank: emb.EmbeddingSet, heads, steps: int = 300):
    """Heads that memorise ``train``: full-batch Adam on the pairs' loss against the bank, no DP (a plain loop)."""
    from relink.dp.loss import HeadPair, pair_infonce, project_bank

    pair = HeadPair(heads.image, heads.text)
    xi, xt = torch.as_tensor(np.asarray(train.image_trunk)), torch.as_tensor(np.asarray(train.text_trunk))
    bi, bt = torch.as_tensor(np.asarray(bank.image_trunk)), torch.as_tensor(np.asarray(bank.text_trunk))
    opt = torch.optim.Adam(pair.parameters(), lr=3e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = pair_infonce(*pair(xi, xt), project_bank(pair.image, bi), project_bank(pair.text, bt), 0.07).mean()
        loss.backward()
        opt.step()
    return heads


def membership(heads, members, nonmembers) -> dict[str, float]:
    """A threshold membership attack on real rows: TPR at FPR 0.1 of the own-pair cosine."""
    return {"tpr_at_fpr_0.1": threshold_attack(pair_scores(heads, members), pair_scores(heads, nonmembers), 0.1)}


def test_a_memorising_start_breaks_the_guarantee_and_a_random_start_keeps_it():
    """The issue's finding, on a small set: DP at epsilon 0.09 from memorising heads still lets a threshold attack
    find the members far above what DP allows at FPR 0.1; from a random start it stays within the limit."""
    es = toy_set(n_patients=300, per_patient=1, di=256, dt=256, identity=1.0, noise=1.0, seed=0)
    train, bank, test = es.split("train"), es.split("validate"), es.split("test")
    memo = _memorise(train, bank, toy_heads(256, 256, 64))
    assert membership(memo, train, test)["tpr_at_fpr_0.1"] > 0.5
    dp = MitigationSpec(epsilon=0.09, delta=1e-4, epochs=5, batch_size=32, temperature=0.07, reproducible_noise=0)
    old, rep = fit_heads(train, bank, memo, dp, progress=False)
    limit = dp_tpr_limit(rep["epsilon"], 1e-4, 0.1)
    assert limit == pytest.approx(math.exp(rep["epsilon"]) * 0.1 + 1e-4) and limit < 0.12
    before = membership(old, train, test)["tpr_at_fpr_0.1"]
    new, _ = fit_heads(train, bank, random_heads(memo, 0), dp, progress=False)
    after = membership(new, train, test)["tpr_at_fpr_0.1"]
    assert before > 3 * limit  # the old release broke its promise
    # the new one keeps it, within the sampling error of 177 members and 61 non-members at FPR 0.1
    assert after < limit + 0.1


def test_threshold_attack_against_a_hand_count():
    members, nonmembers = np.array([5.0, 4.0, 3.0, 0.85]), np.arange(10, dtype=float) / 10  # 0.0 .. 0.9
    assert threshold_attack(members, nonmembers, 0.1) == 1.0  # above 0.8 lets one non-member (0.9) through
    assert threshold_attack(members, nonmembers, 0.0) == 0.75  # above 0.9: 0.85 is lost
    assert threshold_attack(np.zeros(4), nonmembers, 0.1) == 0.0
