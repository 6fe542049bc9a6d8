"""embed_many: one decode and tokenization per row for several models, identical to one model at a time."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.cohort import make_tiny_cohort
from relink import embeddings
from relink.cohort import read_cohort, write_cohort
from relink.embed import EmbedJob, embed_cohort, embed_many
from relink.embed.dataset import PairDataset
from relink.embed.run import load_for_embedding
from relink.embed.shards import EmbedWork, work_path
from relink.models import load_model
from relink.models.preprocess import input_key

MODEL = "relink-vit-tiny"
ARRAYS = ("image", "text", "image_trunk", "text_trunk")
SETTINGS = dict(batch_size=4, shard_size=10, num_workers=0, progress=False)


def _variant(scale: float, name: str):
    """The tiny model with other weights (as the rungs of a ladder differ), same inputs."""
    lm = load_for_embedding(MODEL)
    with torch.no_grad():
        lm.model.visual.proj.mul_(scale)
        lm.model.text_projection.mul_(-scale)
        lm.model.visual.conv1.weight.mul_(scale)
    lm.fingerprint = name
    return lm


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    return make_tiny_cohort(tmp_path_factory.mktemp("cohort"), n=30, seed=5)


@pytest.fixture(scope="module")
def models():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        other_inputs = load_model(MODEL, image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.25, 0.25))
    return {"a": load_for_embedding(MODEL), "b": _variant(1.5, "rung-b"), "c": _variant(0.5, "rung-c"),
            "mean": other_inputs}


@pytest.fixture(scope="module")
def eval_rows(cohort_dir):
    return (read_cohort(cohort_dir).frame["split"] == "test").to_numpy()


@pytest.fixture(scope="module")
def separately(tmp_path_factory, cohort_dir, models, eval_rows):
    """Each model on its own: the reference (the subset job through a manifest of its own, as the paper did)."""
    root = tmp_path_factory.mktemp("separate")
    cohort = read_cohort(cohort_dir)
    subset = write_cohort(cohort.frame[eval_rows], root / "eval.parquet", image_root=cohort.image_root)
    return {
        "a": embed_cohort(cohort_dir, models["a"], root / "a", **SETTINGS),
        "b": embed_cohort(subset, models["b"], root / "b", **SETTINGS),
        "c": embed_cohort(cohort_dir, models["c"], root / "c", **SETTINGS),
        "mean": embed_cohort(cohort_dir, models["mean"], root / "mean", **SETTINGS),
    }


def _files(path: Path) -> dict[str, bytes]:
    names = [f"{a}.npy" for a in ARRAYS] + ["rows.parquet"]
    return {n: (path / n).read_bytes() for n in names if (path / n).exists()}


def _jobs(root: Path, models, eval_rows) -> list[EmbedJob]:
    return [EmbedJob(models["a"], root / "a"), EmbedJob(models["b"], root / "b", rows=eval_rows),
            EmbedJob(models["c"], root / "c"), EmbedJob(models["mean"], root / "mean")]


def test_input_key_tells_models_apart(models):
    from open_clip.tokenizer import SimpleTokenizer

    key = {k: input_key(m.preprocess, m.preprocess_cfg, m.tokenizer) for k, m in models.items()}
    assert key["a"] == key["b"] == key["c"] != key["mean"]
    a = models["a"]
    n = a.tokenizer.context_length
    same = SimpleTokenizer(context_length=n)
    assert input_key(a.preprocess, a.preprocess_cfg, same) == key["a"]  # a separate but equal tokenizer
    for other in (SimpleTokenizer(context_length=n + 1), SimpleTokenizer(context_length=n, clean="whitespace")):
        assert input_key(a.preprocess, a.preprocess_cfg, other) != key["a"]


def test_shared_decoding_gives_identical_sets_and_decodes_each_row_once(tmp_path, cohort_dir, models, eval_rows,
                                                                        separately, monkeypatch):
    decoded = []
    real = PairDataset.load_image
    monkeypatch.setattr(PairDataset, "load_image", lambda self, path: (decoded.append(path), real(self, path))[1])
    outs = embed_many(cohort_dir, _jobs(tmp_path, models, eval_rows), **SETTINGS)
    assert [o.name for o in outs] == ["a", "b", "c", "mean"]
    for name in ("a", "b", "c", "mean"):
        assert _files(tmp_path / name) == _files(separately[name]), name
        mine, ref = embeddings.load(tmp_path / name).meta, embeddings.load(separately[name]).meta
        for key in ("cohort_fingerprint", "weights_fingerprint", "preprocess", "n_rows", "n_rows_cohort"):
            assert mine[key] == ref[key], (name, key)
        assert not work_path(tmp_path / name).exists()
    assert len(embeddings.load(tmp_path / "b")) == int(eval_rows.sum()) < 30
    # one pass for the three models with equal inputs, one for the model with other normalisation
    assert len(decoded) == 2 * 30 and len(set(decoded)) == 30


def test_interrupted_shared_run_resumes_each_model(tmp_path, cohort_dir, models, eval_rows, separately):
    written = []
    real = EmbedWork.write

    def stop_after_four(work, shard, *rest):
        if len(written) == 4:
            raise KeyboardInterrupt
        written.append((work.path.name, shard.start))
        real(work, shard, *rest)

    with pytest.raises(KeyboardInterrupt):
        embed_many(cohort_dir, _jobs(tmp_path, models, eval_rows), **SETTINGS, write_shard=stop_after_four)
    assert {w for w, _ in written} >= {"a.work", "c.work"}  # the models advanced together
    assert not any((tmp_path / n).exists() for n in ("a", "b", "c", "mean"))

    before = list(written)
    embed_many(cohort_dir, _jobs(tmp_path, models, eval_rows), **SETTINGS,
               write_shard=lambda work, shard, *rest: (written.append((work.path.name, shard.start)),
                                                       real(work, shard, *rest)))
    again = written[len(before):]
    assert not set(before) & set(again)  # finished shards were not recomputed
    for name in ("a", "b", "c", "mean"):
        assert _files(tmp_path / name) == _files(separately[name]), name


def test_reused_and_new_jobs_mix(tmp_path, cohort_dir, models, eval_rows, separately, capsys):
    import shutil

    shutil.copytree(separately["a"], tmp_path / "a")
    embed_many(cohort_dir, [(models["a"], tmp_path / "a"), (models["c"], tmp_path / "c")], **SETTINGS)
    assert "reusing" in capsys.readouterr().err
    assert _files(tmp_path / "c") == _files(separately["c"])


def test_bad_rows_and_jobs(tmp_path, cohort_dir, models):
    from relink.errors import RelinkError

    with pytest.raises(RelinkError, match="same --out"):
        embed_many(cohort_dir, [(models["a"], tmp_path / "x"), (models["c"], tmp_path / "x")], **SETTINGS)
    with pytest.raises(RelinkError, match="increasing row positions"):
        embed_many(cohort_dir, [(models["a"], tmp_path / "y", [3, 1])], **SETTINGS)
    with pytest.raises(RelinkError, match="mask of 30 values"):
        embed_many(cohort_dir, [(models["a"], tmp_path / "y", np.ones(5, dtype=bool))], **SETTINGS)
    with pytest.raises(RelinkError, match="select none"):
        embed_many(cohort_dir, [(models["a"], tmp_path / "y", np.zeros(30, dtype=bool))], **SETTINGS)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
