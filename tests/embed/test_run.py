"""relink embed: the EmbeddingSet contract, fidelity to the model, cache, resume, bad rows, torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.cohort import make_tiny_cohort
from relink import embeddings
from relink.cli import main as cli_main
from relink.cohort import fingerprint, read_cohort, write_cohort
from relink.embed import embed_cohort
from relink.embed.dataset import PairDataset
from relink.embed.run import load_for_embedding
from relink.embed.shards import EmbedWork, work_path
from relink.errors import CohortError, EmbeddingError, ModelError, RelinkError

MODEL = "relink-vit-tiny"
ARRAYS = ("image", "text", "image_trunk", "text_trunk")


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    return make_tiny_cohort(tmp_path_factory.mktemp("cohort"), n=24, seed=3)


@pytest.fixture(scope="module")
def lm():
    return load_for_embedding(MODEL)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cohort_dir, lm):
    """One uninterrupted single-process run that other tests compare against."""
    out = tmp_path_factory.mktemp("ref") / "emb"
    embed_cohort(cohort_dir, lm, out, batch_size=4, shard_size=10, num_workers=0, progress=False)
    return out


def _bytes(path: Path) -> dict[str, bytes]:
    return {name: (path / f"{name}.npy").read_bytes() for name in ARRAYS if (path / f"{name}.npy").exists()}


def test_embedding_set_contract(reference, cohort_dir, lm):
    es = embeddings.load(reference, require_trunk=True)
    cohort = read_cohort(cohort_dir)
    assert list(es.rows["pair_id"]) == list(cohort.frame["pair_id"])
    assert list(es.rows.columns) == list(embeddings.ROW_COLUMNS)
    assert es.image.dtype == np.float32 and es.image.shape == (24, 64) and es.text.shape == (24, 64)
    assert es.image_trunk.shape == (24, 128) and es.text_trunk.shape == (24, 128)
    np.testing.assert_allclose(np.linalg.norm(es.image, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(es.text, axis=1), 1, atol=1e-5)
    meta = es.meta
    assert meta["model"] == MODEL and meta["weights_fingerprint"] == lm.fingerprint
    assert meta["cohort_fingerprint"] == fingerprint(cohort)
    assert meta["preprocess"]["size"] == [64, 64] and meta["n_skipped"] == 0
    assert meta["format_version"] == embeddings.FORMAT_VERSION and meta["relink_version"]
    assert not work_path(reference).exists()


def test_embeddings_match_the_model(reference, cohort_dir, lm):
    """Row i holds what open_clip itself computes for pair i, and trunk -> head reproduces it."""
    from relink.models.heads import extract_heads

    es = embeddings.load(reference)
    cohort = read_cohort(cohort_dir)
    rows = [0, 7, 23]
    with torch.no_grad():
        x = torch.stack([lm.preprocess(Image.open(cohort.image_file(i))) for i in rows])
        t = lm.tokenizer([cohort.frame["report"].iat[i] for i in rows])
        img = lm.model.encode_image(x, normalize=True).numpy()
        txt = lm.model.encode_text(t, normalize=True).numpy()
        heads = extract_heads(lm.model)
        via_trunk = torch.nn.functional.normalize(heads.image(torch.from_numpy(np.asarray(es.image_trunk[rows]))), dim=-1)
    np.testing.assert_allclose(es.image[rows], img, atol=2e-5)
    np.testing.assert_allclose(es.text[rows], txt, atol=2e-5)
    np.testing.assert_allclose(es.image[rows], via_trunk.numpy(), atol=2e-5)


def test_fast_decode_is_bit_identical_to_the_eval_transform(tmp_path, cohort_dir, lm):
    cohort = read_cohort(cohort_dir)
    gray = cohort.image_file(1)
    Image.open(gray).convert("RGB").save(tmp_path / "rgb.png")
    Image.open(gray).resize((80, 96)).save(tmp_path / "big.png")  # takes the model's own transform
    ds = PairDataset([], [], lm.preprocess, lm.tokenizer, lm.preprocess_cfg)
    for f in (gray, tmp_path / "rgb.png", tmp_path / "big.png"):
        item = ds.load_image(str(f))
        assert item.dtype == torch.uint8  # a quarter of float32's bytes between processes
        assert torch.equal(ds.model_input(item[None])[0], lm.preprocess(Image.open(f)))


def test_workers_give_identical_bytes(tmp_path, cohort_dir, lm, reference):
    out = embed_cohort(cohort_dir, lm, tmp_path / "w", batch_size=4, shard_size=10, num_workers=2, progress=False)
    assert _bytes(out) == _bytes(reference)


def test_existing_output_is_reused_and_changes_are_misses(tmp_path, cohort_dir, lm, reference, capsys):
    out = tmp_path / "emb"
    shutil.copytree(reference, out)
    calls = []

    def counted(work, shard, *rest):  # a shard computed and stored: the run did not reuse the set
        calls.append(1)
        EmbedWork.write(work, shard, *rest)

    embed_cohort(cohort_dir, lm, out, batch_size=4, shard_size=10, num_workers=0, progress=False, write_shard=counted)
    assert not calls and "reusing" in capsys.readouterr().err

    # a changed report is a changed cohort: recomputed, new fingerprint, never the stale set
    cohort = read_cohort(cohort_dir)
    changed = cohort.frame.copy()
    changed.loc[5, "report"] = "large nodular opacity in the left upper zone."
    moved = tmp_path / "changed"
    moved.mkdir()
    shutil.copytree(cohort_dir / "images", moved / "images")
    write_cohort(changed, moved)
    embed_cohort(moved, lm, out, batch_size=4, shard_size=10, num_workers=0, progress=False, write_shard=counted)
    assert calls and "cohort changed" in capsys.readouterr().err
    es = embeddings.load(out)
    assert es.meta["cohort_fingerprint"] == fingerprint(read_cohort(moved)) != fingerprint(cohort)
    ref = embeddings.load(reference)
    assert not np.array_equal(es.text[5], ref.text[5]) and np.array_equal(es.text[4], ref.text[4])

    # other weights: a miss too
    other = load_for_embedding(MODEL)
    with torch.no_grad():
        other.model.visual.proj.mul_(2).add_(0.01)
    other.fingerprint = "changed-weights"
    n = len(calls)
    embed_cohort(moved, other, out, batch_size=4, shard_size=10, num_workers=0, progress=False, write_shard=counted)
    assert len(calls) > n and embeddings.load(out).meta["weights_fingerprint"] == "changed-weights"


def test_interrupted_run_resumes_to_identical_bytes(tmp_path, cohort_dir, lm, reference):
    out = tmp_path / "emb"
    written = []
    real = EmbedWork.write

    def stop_after_two(work, shard, *rest):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(shard)
        real(work, shard, *rest)

    with pytest.raises(KeyboardInterrupt):
        embed_cohort(cohort_dir, lm, out, batch_size=4, shard_size=10, num_workers=0, progress=False,
                     write_shard=stop_after_two)
    assert not out.exists() and len(list(work_path(out).glob("*.done.json"))) == 2

    written.clear()
    embed_cohort(cohort_dir, lm, out, batch_size=4, shard_size=10, num_workers=0, progress=False,
                 write_shard=lambda work, shard, *rest: (written.append(shard), real(work, shard, *rest)))
    assert [(s.start, s.stop) for s in written] == [(20, 24)]  # only the rest was computed
    assert _bytes(out) == _bytes(reference)
    assert (out / "rows.parquet").read_bytes() == (reference / "rows.parquet").read_bytes()
    assert not work_path(out).exists()


def test_work_folder_of_another_model_is_not_reused(tmp_path, cohort_dir, lm, reference):
    out = tmp_path / "emb"
    other = load_for_embedding(MODEL)
    with torch.no_grad():
        other.model.text_projection.mul_(-1)
    other.fingerprint = "other"
    def interrupt(work, shard, *rest):
        EmbedWork.write(work, shard, *rest)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_cohort(cohort_dir, other, out, batch_size=4, shard_size=10, num_workers=0, progress=False,
                     write_shard=interrupt)
    embed_cohort(cohort_dir, lm, out, batch_size=4, shard_size=10, num_workers=0, progress=False)
    assert _bytes(out) == _bytes(reference)


@pytest.fixture()
def corrupt_cohort(tmp_path, cohort_dir):
    root = tmp_path / "corrupt"
    shutil.copytree(cohort_dir, root)
    cohort = read_cohort(root)
    bad = cohort.image_file(13)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    return root, cohort.frame["pair_id"].iat[13], bad


def test_corrupt_image_names_the_row_and_writes_nothing(tmp_path, corrupt_cohort, lm):
    root, pair_id, bad = corrupt_cohort
    out = tmp_path / "emb"
    with pytest.raises(CohortError) as err:
        embed_cohort(root, lm, out, batch_size=4, shard_size=10, num_workers=1, progress=False)
    msg = str(err.value)
    assert "row 13" in msg and repr(pair_id) in msg and str(bad) in msg and "--skip-bad" in msg
    assert not out.exists() and not work_path(out).exists()


def test_skip_bad_leaves_out_and_counts(tmp_path, corrupt_cohort, lm, reference, capsys):
    root, pair_id, _ = corrupt_cohort
    out = embed_cohort(root, lm, tmp_path / "emb", batch_size=4, shard_size=10, num_workers=0,
                       skip_bad=True, progress=False)
    es, ref = embeddings.load(out), embeddings.load(reference)
    assert len(es) == 23 and pair_id not in set(es.rows["pair_id"])
    assert es.meta["n_skipped"] == 1 and es.meta["skipped"][0]["pair_id"] == pair_id
    keep = ref.rows["pair_id"] != pair_id
    np.testing.assert_array_equal(es.image, ref.image[keep.to_numpy()])
    assert "skipped 1" in capsys.readouterr().err
    # a set with skipped rows is not reused by a strict run
    with pytest.raises(CohortError):
        embed_cohort(root, lm, out, batch_size=4, shard_size=10, num_workers=0, progress=False)


def test_no_trunk_set_is_refused_by_the_dp_step(tmp_path, cohort_dir, lm, reference):
    out = embed_cohort(cohort_dir, lm, tmp_path / "e", batch_size=4, shard_size=10, num_workers=0,
                       with_trunk=False, progress=False)
    assert not (out / "image_trunk.npy").exists()
    assert (out / "image.npy").read_bytes() == (reference / "image.npy").read_bytes()
    with pytest.raises(EmbeddingError, match="no trunk features"):
        embeddings.load(out, require_trunk=True)


def test_cli_embed_and_bad_inputs(tmp_path, cohort_dir, capsys):
    out = tmp_path / "cli"
    assert cli_main(["embed", "--cohort", str(cohort_dir), "--model", MODEL, "--out", str(out),
                     "--batch-size", "8", "--workers", "0", "--quiet"]) == 0
    assert len(embeddings.load(out)) == 24
    assert cli_main(["embed", "--cohort", str(cohort_dir), "--model", "relink-vit-tinny", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'relink-vit-tinny'" in err and "relink-vit-tiny" in err and len(err.strip().splitlines()) == 1
    assert cli_main(["embed", "--cohort", str(tmp_path / "nowhere"), "--model", MODEL, "--out", str(tmp_path / "x")]) == 2
    assert "cohort manifest not found" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_checkpoint_that_does_not_fit_is_a_model_error(tmp_path, lm):
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in lm.model.state_dict().items()}
    state["visual.proj"] = torch.zeros(3, 3)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ModelError, match="does not fit"):
        load_for_embedding(f"{MODEL}:{tmp_path / 'bad.safetensors'}")


def _torchrun(args: list[str], nproc: int, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "relink", "embed", "--distributed", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path, cohort_dir, reference):
    """`torchrun -m relink embed --distributed` with 2 gloo processes writes the 1-process bytes."""
    out = tmp_path / "dist"
    res = _torchrun(["--cohort", str(cohort_dir), "--model", MODEL, "--out", str(out), "--batch-size", "4",
                     "--shard-size", "10", "--workers", "0", "--quiet"], 2, tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert _bytes(out) == _bytes(reference)
    assert json.loads((out / "meta.json").read_text())["weights_fingerprint"] == \
        json.loads((reference / "meta.json").read_text())["weights_fingerprint"]
    assert not work_path(out).exists()


@pytest.mark.slow
def test_torchrun_error_on_one_rank_stops_all(tmp_path, corrupt_cohort):
    root, pair_id, _ = corrupt_cohort  # row 13 lies in shard 10-20, which rank 1 embeds
    res = _torchrun(["--cohort", str(root), "--model", MODEL, "--out", str(tmp_path / "d"), "--batch-size", "4",
                     "--shard-size", "10", "--workers", "0", "--quiet"], 2, tmp_path)
    assert res.returncode != 0 and repr(pair_id) in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ": error: " in ln]
    assert len(errors) == 1 and errors[0].startswith("relink embed: error: rank 1: row 13"), res.stderr[-2000:]
    # bad input: the work folder rank 0 created (with its finished shard 0-10) is removed as well
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt"]


def test_front_door_returns_the_folders_settings_and_notes(tmp_path, cohort_dir, lm, reference):
    """`relink.embed`: the same bytes as embed_cohort, and what it told the user kept as data."""
    from relink.api.embed import EmbedSpec, embed

    spec = EmbedSpec(batch_size=4, shard_size=10, workers=0)
    heard = []
    first = embed(cohort_dir, lm, tmp_path / "e", spec, progress=False, on_note=heard.append)
    assert first.outputs == (tmp_path / "e",) and first.spec == spec and _bytes(tmp_path / "e") == _bytes(reference)
    again = embed(cohort_dir, lm, tmp_path / "e", spec, progress=False, on_note=heard.append)
    assert len(again.notes) == 1 and again.notes[0].startswith("reusing") and heard == list(first.notes + again.notes)
    with pytest.raises(RelinkError, match="--batch-size must be"):
        EmbedSpec(batch_size=0)
