"""Utility: linear probe (patient-disjoint splits), zero-shot AUROC and `relink probe` (the member gap:
tests/utility/test_membership.py)."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from helpers.sets import tiny_model_set, toy_heads, toy_set
from relink.cli import main
from relink.embeddings import l2_normalise
from relink.errors import RelinkError
from relink.labels import CHEXPERT_LABELS
from relink.tables import read_table
from relink.utility.probe import label_targets, linear_probe, probe_embeddings, probe_split
from relink.utility.zeroshot import zeroshot_auroc, zeroshot_scores


@pytest.fixture(scope="module")
def toy():
    return toy_set(n_patients=150, per_patient=2, seed=0)


def macro(frame, features=None):
    sel = frame[frame["label"] == "macro"]
    if features:
        sel = sel[sel["features"] == features]
    return float(sel["value"].iloc[0])


def test_label_targets_follow_the_documented_policy():
    labels = np.array([[1, 0, np.nan, -1] + [0] * 10], dtype=float)
    y, valid = label_targets(labels, "exclude")
    assert y[0, :4].tolist() == [1, 0, 0, 0] and valid[0, :4].tolist() == [True, True, True, False]
    assert label_targets(labels, "positive")[0][0, 3] == 1 and label_targets(labels, "negative")[1][0, 3]
    with pytest.raises(RelinkError):
        label_targets(labels, "maybe")


def test_probe_splits_are_patient_disjoint_or_the_cohorts_own(toy):
    used, tr, te = probe_split(toy.rows, "auto")
    assert used == "cohort" and set(toy.rows["split"].iloc[tr]) == {"train"} and set(toy.rows["split"].iloc[te]) == {"test"}
    used, tr, te = probe_split(toy.rows, "group", random_state=1)
    assert used == "group" and len(tr) + len(te) == len(toy)
    assert not set(toy.rows["patient_id"].iloc[tr]) & set(toy.rows["patient_id"].iloc[te])
    with pytest.raises(RelinkError, match="cohort"):
        probe_split(toy.split("train").rows, "cohort")


def test_probe_reads_labels_from_informative_features_not_from_noise(toy):
    table = probe_embeddings(toy, ("projected", "trunk"))
    assert set(table["features"]) == {"projected", "trunk"}
    assert macro(table, "trunk") > 0.8 and table[table["label"] != "macro"]["converged"].all()
    assert int(table.loc[(table["label"] == "macro") & (table["features"] == "trunk"), "n_labels"].iloc[0]) == 14
    noise = np.random.default_rng(0).standard_normal((len(toy), 32))
    _, tr, te = probe_split(toy.rows)
    assert abs(macro(linear_probe(noise, toy.labels(), tr, te)) - 0.5) < 0.1


def test_probe_is_blind_to_an_invertible_linear_change(toy):
    _, tr, te = probe_split(toy.rows)
    x = np.asarray(toy.image_trunk)
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((x.shape[1], x.shape[1])))
    mix = q @ np.diag(np.linspace(0.5, 2.0, x.shape[1]))  # well-conditioned, not orthogonal
    a, b = linear_probe(x, toy.labels(), tr, te), linear_probe(x @ mix, toy.labels(), tr, te)
    assert abs(macro(a) - macro(b)) < 0.005


def test_macro_skips_single_class_labels_and_says_how_many(toy):
    labels = toy.labels().copy()
    _, tr, te = probe_split(toy.rows)
    labels[te, 3] = 0.0  # Lung Lesion: no positive in the test part
    labels[:, 5] = 1.0  # Edema: everyone positive
    table = linear_probe(np.asarray(toy.image_trunk), labels, tr, te)
    assert table.set_index("label").loc["macro", "n_labels"] == 12
    assert table.set_index("label")["value"].isna().sum() == 2


def test_zeroshot_scores_rank_by_the_prompt_difference():
    rng = np.random.default_rng(0)
    n, e = 300, 16
    dirs = l2_normalise(rng.standard_normal((len(CHEXPERT_LABELS), e)))
    y = (rng.random((n, len(CHEXPERT_LABELS))) < 0.3).astype(float)
    image = l2_normalise(y @ dirs + 0.3 * rng.standard_normal((n, e)))
    head = nn.Linear(e, e, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(e))
    scores = zeroshot_scores(image, head, -dirs, dirs)
    from sklearn.metrics import roc_auc_score

    assert np.mean([roc_auc_score(y[:, j], scores[:, j]) for j in range(y.shape[1])]) > 0.9
    flipped = zeroshot_scores(image, head, dirs, -dirs)
    np.testing.assert_allclose(flipped, -scores, atol=1e-5)


@pytest.fixture(scope="module")
def model_set(tmp_path_factory):
    return tiny_model_set(80)


def test_zeroshot_auroc_runs_the_models_text_tower(model_set):
    from relink.embeddings import load
    from relink.models import load_model

    ckpt, es_dir = model_set
    table = zeroshot_auroc(load(es_dir), load_model(str(ckpt)), split=None)
    assert list(table["label"]) == list(CHEXPERT_LABELS) + ["macro"]
    vals = table["value"].dropna()
    assert ((vals >= 0) & (vals <= 1)).all()
    assert table.iloc[-1]["n_labels"] == (table.iloc[:-1]["value"].notna()).sum() > 0


def test_cli_probe_writes_a_tidy_table_with_provenance(model_set, tmp_path, capsys):
    _, es_dir = model_set
    out = tmp_path / "u.parquet"
    assert main(["probe", "--embeddings", str(es_dir), "--zeroshot", "--member-gap", "10", "--split", "group",
                 "--out", str(out)]) == 0
    table, prov = read_table(out)
    assert set(table["utility"]) == {"linear_probe", "zeroshot", "member_gap"}
    assert set(table.loc[table["utility"] == "linear_probe", "features"]) == {"projected", "trunk"}
    assert prov["command"] == "probe" and "packages" in prov
    assert "macro AUROC" in capsys.readouterr().out
    assert main(["probe", "--embeddings", str(es_dir), "--out", str(tmp_path / "u.txt")]) == 2
    assert not pd.isna(table.loc[table["utility"] == "member_gap", "value"]).any()


def test_probe_front_door_returns_one_table_settings_and_notes(model_set):
    """`relink.probe`: one table for every set, notes as data, no local path, heads checked to reproduce."""
    from relink.api.probe import ProbeSpec, probe
    from relink.dp.apply import apply_heads
    from relink.embeddings import load
    from relink.errors import RelinkError
    from relink.models import load_model
    from relink.models.heads import extract_heads

    ckpt, es_dir = model_set
    es, loaded = load(es_dir), load_model(str(ckpt))
    other = apply_heads(es, toy_heads(es.image_trunk.shape[1], es.text_trunk.shape[1], es.image.shape[1], seed=5))
    spec = ProbeSpec(zeroshot=True, member_gap=10, split="group")
    result = probe([es, other], spec, model=loaded, text_heads=[None, extract_heads_of(other)], names=["a", "b"])
    t = result.table
    assert result.spec == spec and result.names == ("a", "b")
    assert set(t.loc[t["embeddings"] == "b", "features"].dropna()) == {"projected"}  # one trunk: probed once
    assert result.notes == ("b: trunk features as in a, probed once",)
    assert str(ckpt) not in t.to_csv() and str(es_dir) not in t.to_csv()
    # an independent path: the zero-shot rows equal zeroshot_auroc called directly with the same head
    direct = zeroshot_auroc(es, loaded, text_head=extract_heads(loaded.model).text, split="test")
    mine = t[(t["embeddings"] == "a") & (t["utility"] == "zeroshot")]
    np.testing.assert_allclose(mine["value"].to_numpy(), direct["value"].to_numpy(), equal_nan=True)
    with pytest.raises(RelinkError, match="text head of the heads given for a does not reproduce"):
        probe([es], ProbeSpec(zeroshot=True), model=loaded, text_heads=[extract_heads_of(other)], names=["a"])
    with pytest.raises(RelinkError, match="--member-gap must be 0"):
        ProbeSpec(member_gap=1)


def extract_heads_of(es):
    """The text head :func:`relink.dp.apply.apply_heads` used for ``es`` (rebuilt from the seed of the test)."""
    return toy_heads(es.image_trunk.shape[1], es.text_trunk.shape[1], es.image.shape[1], seed=5).text

# The linear probe refuses a cohort split that puts one patient on both sides.
def test_cohort_split_sharing_a_patient_is_refused():
    rows = pd.DataFrame({"pair_id": [f"p{i}" for i in range(6)],
                         "patient_id": ["a", "a", "b", "c", "c", "d"],
                         "split": ["train", "test", "train", "test", "test", "train"]})
    with pytest.raises(RelinkError, match=r"1 patient\(s\) have rows in both the train and the test split"):
        probe_split(rows, "cohort")
    with pytest.raises(RelinkError, match="patient-disjoint"):
        probe_split(rows, "auto")
    used, train, test = probe_split(rows, "group", test_size=0.5, random_state=0)
    assert used == "group"
    assert not set(rows.patient_id.iloc[train]) & set(rows.patient_id.iloc[test])


def test_patient_disjoint_cohort_split_is_used_as_given():
    rows = pd.DataFrame({"pair_id": list("uvwxyz"), "patient_id": list("aabbcd"),
                         "split": ["train", "train", "test", "test", "train", "test"]})
    used, train, test = probe_split(rows, "auto")
    assert used == "cohort" and list(train) == [0, 1, 4] and list(test) == [2, 3, 5]
