"""relink train: the ladder, determinism, resume, the open_clip_train CSV and entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers.cohort import make_tiny_cohort
from relink.cli import main as cli_main
from relink.cohort import read_cohort, write_cohort
from relink.errors import RelinkError
from relink.models import checkpoint, load_model
from relink.models.checkpoint import WEIGHTS_FILE
from relink.models.ladder_store import work_path
from relink.models.ladder_train import export_training_csv, lr_at, read_ladder, rung_steps, train_ladder

SETTINGS = dict(config="relink-vit-tiny", epochs=12, batch_size=8, lr=5e-4, seed=0, progress=False)


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    return make_tiny_cohort(tmp_path_factory.mktemp("cohort"), n=40, seed=1)  # 24 train pairs


@pytest.fixture(scope="module")
def ladder(tmp_path_factory, cohort_dir):
    return train_ladder(cohort_dir, out_dir=tmp_path_factory.mktemp("l") / "ladder", **SETTINGS)


def _weights(rung_dir) -> dict[str, bytes]:
    """The tensors of a rung, by name (safetensors files need not be byte-identical for equal tensors)."""
    from safetensors.torch import load_file

    return {k: v.numpy().tobytes() for k, v in sorted(load_file(str(Path(rung_dir) / WEIGHTS_FILE)).items())}


def test_rung_steps_and_schedule():
    assert rung_steps(90, 3) == [10, 30, 90]
    assert rung_steps(9, 3) == [1, 3, 9]
    assert rung_steps(4, 3) == [1, 3, 4]  # too short for T/9, T/3, T: evenly spaced
    with pytest.raises(RelinkError, match="distinct rungs"):
        rung_steps(2, 3)
    lrs = [lr_at(s, 1.0, 5, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.2) and lrs[4] == pytest.approx(1.0)
    assert max(lrs) == pytest.approx(1.0) and all(a >= b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] < 0.01


def test_ladder_layout_and_checkpoints_load(ladder, cohort_dir):
    info = read_ladder(ladder)
    assert info["complete"] and [r["name"] for r in info["rungs"]] == ["rung-1", "rung-2", "rung-3"]
    assert [r["step"] for r in info["rungs"]] == [4, 12, 36]  # 24 pairs, batch 8, 12 epochs: T/9, T/3, T
    assert [r["pairs_seen"] for r in info["rungs"]] == [32, 96, 288]
    assert info["signature"]["pairs"] == 24 and info["signature"]["split"] == "train"
    fingerprints = set()
    for r in info["rungs"]:
        lm = load_model(r["path"])
        assert not lm.model.training and lm.model_cfg["embed_dim"] == 64
        fingerprints.add(lm.fingerprint)
        assert json.loads((Path(r["path"]) / "relink.json").read_text())["step"] == r["step"]
        # what it was trained on: the fingerprint of its training rows' pair ids (a DP run reads it)
        from relink.cohort import read_cohort
        from relink.models import trained_on

        frame = read_cohort(cohort_dir).frame
        assert trained_on.of_spec(r["path"]) == trained_on.private(frame.loc[frame["split"] == "train", "pair_id"])
    assert len(fingerprints) == 3
    assert not (ladder / "train-state.pt").exists()


def _alignment(spec: str, cohort_dir) -> float:
    """Mean cosine of true pairs minus mean cosine of all pairs, on the training pairs."""
    from relink.embed.run import load_for_embedding

    lm = load_for_embedding(spec)
    c = read_cohort(cohort_dir)
    rows = np.flatnonzero(c.frame["split"].to_numpy() == "train")
    with torch.no_grad():
        x = torch.stack([lm.preprocess(Image.open(c.image_file(i))) for i in rows])
        s = lm.model.encode_image(x, normalize=True) @ lm.model.encode_text(
            lm.tokenizer(list(c.frame["report"].iloc[rows])), normalize=True).T
    return float(s.diag().mean() - s.mean())


def test_rungs_are_increasingly_aligned(ladder, cohort_dir):
    info = read_ladder(ladder)
    assert info["rungs"][-1]["loss"] < info["rungs"][0]["loss"]
    before = _alignment("relink-vit-tiny", cohort_dir)
    rungs = [_alignment(r["path"], cohort_dir) for r in info["rungs"]]
    assert before < rungs[0] < rungs[1] < rungs[2] and rungs[2] > before + 0.1


def test_same_seed_same_weights_and_resume_after_interruption(tmp_path, ladder, cohort_dir, monkeypatch, capsys):
    out = tmp_path / "again"
    real = checkpoint.save_checkpoint
    saved = []

    def interrupt_third(*args, **kwargs):
        if len(saved) == 2:
            raise KeyboardInterrupt
        saved.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_checkpoint", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        train_ladder(cohort_dir, out_dir=out, **SETTINGS)
    work = work_path(out)  # trained in OUT.work; OUT appears only when complete
    assert not out.exists() and not read_ladder(work)["complete"] and (work / "train-state.pt").exists()
    monkeypatch.setattr(checkpoint, "save_checkpoint", real)
    train_ladder(cohort_dir, out_dir=out, **SETTINGS)
    assert "resuming after rung-2" in capsys.readouterr().err
    for k in (1, 2, 3):
        assert _weights(out / f"rung-{k}") == _weights(ladder / f"rung-{k}")
    assert not work.exists() and not (out / "train-state.pt").exists() and read_ladder(out)["complete"]
    train_ladder(cohort_dir, out_dir=out, **SETTINGS)  # finished: nothing retrained
    assert "nothing to do" in capsys.readouterr().err


def test_cli_other_seed_differs_and_settings_are_guarded(tmp_path, cohort_dir, capsys):
    def args(seed, out):
        return ["train", "--cohort", str(cohort_dir), "--out", str(tmp_path / out), "--epochs", "1", "--batch-size", "8",
                "--lr", "1e-3", "--save-at", "1", "--seed", str(seed), "--quiet"]

    assert cli_main(args(0, "s0")) == 0 and cli_main(args(1, "s1")) == 0
    assert "rung-1" in capsys.readouterr().out
    assert _weights(tmp_path / "s0" / "rung-1") != _weights(tmp_path / "s1" / "rung-1")
    assert cli_main(args(2, "s1")) == 2  # same --out, other seed
    err = capsys.readouterr().err
    assert "other settings (differs in: seed)" in err and "--overwrite" in err


def test_overwrite_replaces_a_ladder_only_when_the_new_one_is_complete(tmp_path, cohort_dir, monkeypatch):
    quick = dict(SETTINGS, epochs=1, save_at=[1, 2])
    out = train_ladder(cohort_dir, out_dir=tmp_path / "l", **quick)
    old = {p.name: _weights(p) for p in sorted(out.glob("rung-*"))}
    real = checkpoint.save_checkpoint
    saved = []

    def interrupt_second(*args, **kwargs):
        if saved:
            raise KeyboardInterrupt
        saved.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_checkpoint", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        train_ladder(cohort_dir, out_dir=out, overwrite=True, **dict(quick, seed=7))
    assert {p.name: _weights(p) for p in sorted(out.glob("rung-*"))} == old  # untouched while the new one trains
    assert read_ladder(out)["signature"]["seed"] == 0 and work_path(out).is_dir()
    monkeypatch.setattr(checkpoint, "save_checkpoint", real)
    train_ladder(cohort_dir, out_dir=out, overwrite=True, **dict(quick, seed=7))
    assert read_ladder(out)["signature"]["seed"] == 7 and read_ladder(out)["complete"]
    assert _weights(out / "rung-1") != old["rung-1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l"]  # no work folder, no renamed-aside copy


def test_bad_training_inputs(tmp_path, cohort_dir, capsys):
    with pytest.raises(RelinkError, match="--save-at steps must lie in 1..36"):
        train_ladder(cohort_dir, out_dir=tmp_path / "x", save_at=[5, 50], **SETTINGS)
    with pytest.raises(RelinkError, match="no rows with split == 'nope'"):
        train_ladder(cohort_dir, out_dir=tmp_path / "x", split="nope", **SETTINGS)
    assert cli_main(["train", "--cohort", str(cohort_dir), "--config", "relink-vit-tinyy", "--out", str(tmp_path / "y"),
                     "--batch-size", "8"]) == 2
    assert "did you mean: relink-vit-tiny" in capsys.readouterr().err
    assert cli_main(["train", "--cohort", str(cohort_dir)]) == 2
    assert "--out is required" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_export_training_csv(tmp_path, cohort_dir):
    c = read_cohort(cohort_dir)
    frame = c.frame.copy()
    frame.loc[0, "report"] = "FINDINGS:\tleft effusion.\nIMPRESSION:  effusion."
    root = tmp_path / "c"
    (root).mkdir()
    write_cohort(frame, root / "cohort.parquet", image_root=c.image_root)
    out = export_training_csv(root, tmp_path / "train.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "filepath\ttitle" and len(lines) == 1 + int((frame["split"] == "train").sum())
    table = pd.read_csv(out, sep="\t")
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in table["filepath"])
    first = frame.index[frame["split"] == "train"][0]
    assert table["title"].iat[0] == " ".join(str(frame.loc[first, "report"]).split())
    assert cli_main(["train", "--cohort", str(root), "--export-csv", str(tmp_path / "t.csv"), "--split", "test"]) == 0
    assert len(pd.read_csv(tmp_path / "t.csv", sep="\t")) == int((frame["split"] == "test").sum())


@pytest.mark.slow
def test_open_clip_train_entry_point_on_exported_csv(tmp_path, cohort_dir):
    """open_clip's own trainer runs on the exported CSV, and its checkpoint loads in relink."""
    csv = export_training_csv(cohort_dir, tmp_path / "train.csv")
    cmd = [sys.executable, "-m", "relink.models.open_clip_train_wrapper", "--train-data", str(csv),
           "--csv-img-key", "filepath", "--csv-caption-key", "title", "--model", "relink-vit-tiny",
           "--device", "cpu", "--precision", "fp32", "--warmup", "1", "--batch-size", "8", "--epochs", "1",
           "--workers", "0", "--lr", "1e-3", "--logs", str(tmp_path / "logs"), "--name", "tiny",
           "--report-to", "none", "--seed", "0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = tmp_path / "logs" / "tiny" / "checkpoints" / "epoch_1.pt"
    assert ckpt.is_file()
    lm = load_model(f"relink-vit-tiny:{ckpt}")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    for key, value in lm.model.state_dict().items():
        assert torch.equal(value, state[key]), key
    # a reused --name is an error the wrapper turns into a non-zero exit
    assert subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=300).returncode != 0
