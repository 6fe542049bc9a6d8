"""`relink train-heads` / `relink.train_heads`: the attacker who re-trains the heads on public pairs."""

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.sets import toy_set
from relink import embeddings as emb
from relink.api.train_heads import train_heads
from relink.cli import main
from relink.dp.apply import apply_heads, heads_fingerprint, load_heads
from relink.dp.retrain import RetrainSpec, check_apart
from relink.dp.start import random_heads
from relink.errors import RelinkError
from relink.retrieval.audit import audit
from relink.retrieval.spec import AuditSpec

QUICK = RetrainSpec(epochs=15, batch_size=64)


@pytest.fixture(scope="module")
def sets():
    """A public cohort and a target cohort of the same "world" (toy trunks share their maps), disjoint patients."""
    public = toy_set(n_patients=200, seed=1, prefix="q", cohort="public")
    target = toy_set(n_patients=60, seed=2, prefix="t", cohort="target")
    return public, target


def top1(es) -> float:
    """Full-pool image-to-report Recall@1 by brute force (an argmax, not the audit's counts)."""
    scores = es.unit("image") @ es.unit("text").T
    return float(np.mean(scores.argmax(axis=1) == np.arange(len(es))))


def recall_at(es, n: int) -> float:
    t = audit(es, AuditSpec(pools=(n,), ks=(1,)))
    row = t[(t["metric"] == "recall") & (t["direction"] == "image_to_report") & (t["level"] == "study")]
    return float(row["value"].iloc[0])


def test_retrained_heads_relink_far_above_chance(sets):
    public, target = sets
    result = train_heads(public, target, QUICK)
    es = result.embeddings
    assert list(es.rows["pair_id"]) == list(target.rows["pair_id"])
    # the control: heads of the same shape from a random start, never trained
    control = apply_heads(target, random_heads(result.heads, seed=7))
    n = 10
    assert recall_at(es, n) > 0.9
    assert recall_at(control, n) < 0.35  # chance is 0.1
    assert top1(es) > 0.5 > 10 * (1 / len(es))  # full pool: far above chance by an argmax, not the audit
    assert top1(control) < 0.1
    assert result.record["private"] is False and "no privacy guarantee" in result.record["release_note"]
    assert result.notes and all(isinstance(x, str) for x in result.notes)


def test_deterministic_with_seed(sets):
    public, target = sets
    spec = RetrainSpec(epochs=2, batch_size=64)
    a = train_heads(public, target, spec)
    b = train_heads(public, target, spec)
    c = train_heads(public, target, spec.but(seed=1))
    assert heads_fingerprint(a.heads) == heads_fingerprint(b.heads) != heads_fingerprint(c.heads)
    assert np.array_equal(a.embeddings.image, b.embeddings.image)


def test_overlap_and_other_trunks_refused(sets):
    public, target = sets
    shared_patient = target.subset(np.arange(len(target)) < 2)
    shared_patient.rows["pair_id"] = ["new_a", "new_b"]  # new pair ids, same patient
    both = emb.EmbeddingSet(
        __import__("pandas").concat([public.rows, shared_patient.rows], ignore_index=True),
        np.vstack([public.image, shared_patient.image]), np.vstack([public.text, shared_patient.text]),
        np.vstack([public.image_trunk, shared_patient.image_trunk]),
        np.vstack([public.text_trunk, shared_patient.text_trunk]), {})
    with pytest.raises(RelinkError, match=r"shares 0 pair\(s\) and 1 patient\(s\)"):
        check_apart(both, target)
    with pytest.raises(RelinkError, match=r"shares 1\d* pair"):
        check_apart(target, target)
    narrow = toy_set(n_patients=20, seed=5, prefix="n", di=32)
    with pytest.raises(RelinkError, match="not the same trunk"):
        check_apart(narrow, target)
    other = emb.EmbeddingSet(public.rows, public.image, public.text, public.image_trunk, public.text_trunk,
                             {"weights_fingerprint": "aaaa"})
    mine = emb.EmbeddingSet(target.rows, target.image, target.text, target.image_trunk, target.text_trunk,
                            {"weights_fingerprint": "bbbb"})
    with pytest.raises(RelinkError, match="other weights"):
        check_apart(other, mine)
    no_trunk = emb.EmbeddingSet(public.rows, public.image, public.text, None, None, {})
    with pytest.raises(RelinkError, match="no trunk features"):
        check_apart(no_trunk, target)


def cli(capsys, *argv):
    rc = main(["train-heads", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture()
def folders(sets, tmp_path):
    public, target = sets
    meta = {"model": str(tmp_path / "secret-place" / "model.pt")}  # a local path must not reach the output
    p = emb.save(emb.EmbeddingSet(public.rows, public.image, public.text, public.image_trunk, public.text_trunk, meta),
                 tmp_path / "public")
    t = emb.save(emb.EmbeddingSet(target.rows, target.image, target.text, target.image_trunk, target.text_trunk, meta),
                 tmp_path / "target")
    return p, t


def test_cli_writes_guarded_outputs(folders, tmp_path, capsys):
    p, t = folders
    out = tmp_path / "attack"
    rc, stdout, err = cli(capsys, "--public", p, "--target", t, "--out", out, "--epochs", "2", "--seed", "3")
    assert rc == 0, err
    assert "train-heads" in stdout and str(tmp_path) in stdout  # the console may name the folder it wrote
    es = emb.load(out / "embeddings")
    assert list(es.rows["pair_id"]) == list(emb.load(t).rows["pair_id"])
    heads = load_heads(out / "heads.safetensors")
    assert np.allclose(apply_heads(emb.load(t), heads).image, es.image, atol=1e-6)  # heads re-embed the target
    record = json.loads((out / "train-heads.json").read_text())
    assert record["spec"]["seed"] == 3 and record["public_pairs"] == len(emb.load(p))
    for f in out.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".parquet"):
            assert str(tmp_path) not in f.read_bytes().decode("utf-8", "replace"), f.name
    # a re-run replaces its own output; the same seed gives the same heads
    rc, _, err = cli(capsys, "--public", p, "--target", t, "--out", out, "--epochs", "2", "--seed", "3")
    assert rc == 0, err
    assert heads_fingerprint(load_heads(out / "heads.safetensors")) == heads_fingerprint(heads)


@pytest.mark.parametrize("where", ["target", "inside-public", "foreign"])
def test_cli_refuses_outputs_on_inputs(folders, tmp_path, capsys, where):
    p, t = folders
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    out = {"target": t, "inside-public": p / "x", "foreign": foreign}[where]
    before = sorted(x.name for x in Path(out).parent.iterdir())
    rc, _, err = cli(capsys, "--public", p, "--target", t, "--out", out, "--epochs", "1")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(x.name for x in Path(out).parent.iterdir()) == before
    assert (foreign / "keep.txt").read_text() == "mine"


def test_cli_refuses_overlap_in_one_line(folders, tmp_path, capsys):
    p, t = folders
    rc, _, err = cli(capsys, "--public", t, "--target", t, "--out", tmp_path / "o")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "shares" in err and "patient(s)" in err
    rc, _, err = cli(capsys, "--public", p, "--target", p.parent / "nowhere", "--out", tmp_path / "o")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    rc, _, err = cli(capsys, "--public", p, "--target", t, "--out", tmp_path / "o", "--epochs", "0")
    assert rc == 2 and "--epochs" in err and not (tmp_path / "o").exists()


def test_the_sentence_says_what_the_paired_intervals_show():
    import pandas as pd

    from relink.paper.dp_effects import retrained_sentence

    def table(vs_original, vs_dp, dp):
        rows = []
        for name, (value, low, high) in (("retrained_vs_original", vs_original), ("retrained_vs_dp", vs_dp),
                                         ("dp_vs_original", dp)):
            rows.append({"contrast": name, "cohort": "c", "epsilon": 0.34, "value": value, "ci_low": low,
                         "ci_high": high})
        return pd.DataFrame(rows)

    undone = retrained_sentence(table((-0.02, -0.1, 0.06), (1.5, 0.8, 2.4), (-0.6, -0.7, -0.5)))
    assert "as well as the original heads" in undone and "protect nothing" in undone and "-2.0% [-10.0, +6.0]" in undone
    partly = retrained_sentence(table((-0.4, -0.5, -0.3), (0.5, 0.2, 0.9), (-0.6, -0.7, -0.5)))
    assert "protect only partly" in partly
    held = retrained_sentence(table((-0.6, -0.7, -0.5), (0.0, -0.2, 0.2), (-0.6, -0.7, -0.5)))
    assert "does not undo the DP heads" in held
    thin = retrained_sentence(table((-0.3, -0.7, 0.6), (-0.2, -0.8, 2.8), (-0.2, -0.8, 2.5)))
    assert "too few to tell" in thin and "protect nothing" not in thin
    assert "not run" in retrained_sentence(pd.DataFrame(columns=["contrast", "cohort"]))
