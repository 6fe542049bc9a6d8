"""`relink audit` end to end on a hand-written EmbeddingSet."""

import json

import numpy as np
import pandas as pd
import pytest

from relink.cli import main
from relink.labels import CHEXPERT_LABELS
from relink.tables import METRIC_COLUMNS, read_table


def _write_set(folder, n=80, d=8, seed=0, labels=False, image=None):
    """The minimal hand-written format: rows.parquet (pair_id, patient_id), image.npy, text.npy, meta.json."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    img = rng.normal(size=(n, d)).astype(np.float32) if image is None else image
    txt = (img + rng.normal(size=(n, d))).astype(np.float32)
    rows = pd.DataFrame({"pair_id": [f"s{i}" for i in range(n)], "patient_id": [f"p{i // 2}" for i in range(n)]})
    if labels:
        for j, name in enumerate(CHEXPERT_LABELS):
            rows[name] = ((np.arange(n) + j) % 4 == 0).astype(float)
    rows.to_parquet(folder / "rows.parquet", index=False)
    np.save(folder / "image.npy", img * 3.0)  # not unit norm: the audit normalises
    np.save(folder / "text.npy", txt)
    (folder / "meta.json").write_text(json.dumps({"format_version": 1, "model": "hand-made"}))
    return folder


@pytest.mark.parametrize("ext", [".parquet", ".csv", ".json"])
def test_audit_round_trip(tmp_path, ext, capsys):
    emb = _write_set(tmp_path / "emb")
    out = tmp_path / f"audit{ext}"
    rc = main(["audit", "--embeddings", str(emb), "--pools", "10,full", "--k", "1,5", "--bootstrap", "50",
               "--out", str(out)])
    assert rc == 0 and "rows ->" in capsys.readouterr().out
    frame, prov = read_table(out)
    assert set(frame.columns) == set(METRIC_COLUMNS) and len(frame) == 2 * 2 * (2 * 2 + 2)
    assert set(frame.model) == {"hand-made"} and set(frame.N) == {10, 80}
    assert prov["command"] == "audit" and prov["embedding_meta"]["model"] == "hand-made"
    assert prov["settings"]["n_boot"] == 50 and prov["embeddings"] == "emb"
    assert "/" not in json.dumps(prov["embeddings"])


def test_audit_hard_negatives_and_options(tmp_path):
    emb = _write_set(tmp_path / "emb", labels=True)
    out = tmp_path / "a.parquet"
    rc = main(["audit", "--embeddings", str(emb), "--pools", "5,10", "--k", "1", "--hard-negatives",
               "--directions", "image_to_report", "--levels", "patient", "--bootstrap", "0",
               "--model-name", "m1", "--monte-carlo", "20", "--out", str(out)])
    assert rc == 0
    frame, _ = read_table(out)
    assert set(frame.negatives) == {"random", "pathology_matched", "positive_set_matched"}
    assert set(frame.direction) == {"image_to_report"} and set(frame.level) == {"patient"}
    assert set(frame.model) == {"m1"} and frame.ci_low.isna().all()
    assert {"exact", "monte_carlo"} == set(frame.estimator)


@pytest.mark.parametrize("args, message", [
    (["--pools", "10,1000"], "N=1000 is larger than the candidate set (80 candidates)"),
    (["--pools", "10", "--k", "20"], "K=20 exceeds the pool size N=10"),
    (["--hard-negatives", "--pools", "10"], "every label is missing"),
    (["--directions", "up"], "unknown direction 'up'"),
    (["--split", "train"], "--split 'train'"),
])
def test_audit_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    emb = _write_set(tmp_path / "emb")
    out = tmp_path / "a.csv"
    assert main(["audit", "--embeddings", str(emb), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("relink audit: error:")
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "nan", "inf", "0.5"])
def test_audit_refuses_a_tie_tolerance_outside_its_range(tmp_path, capsys, value):
    emb = _write_set(tmp_path / "emb")
    out = tmp_path / "a.csv"
    assert main(["audit", "--embeddings", str(emb), "--out", str(out), "--tie-tol", value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"argument --tie-tol: must be a finite number > 0 and <= 0.01, got '{value}'" in err
    assert not out.exists()


def test_audit_names_the_bad_file_and_row(tmp_path, capsys):
    image = np.random.default_rng(1).normal(size=(30, 4)).astype(np.float32)
    image[11] = 0
    emb = _write_set(tmp_path / "emb", n=30, d=4, image=image)
    assert main(["audit", "--embeddings", str(emb), "--pools", "10", "--out", str(tmp_path / "a.csv")]) == 2
    assert "image.npy row 11 has zero norm" in capsys.readouterr().err
    assert main(["audit", "--embeddings", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a.csv")]) == 2
    assert "embedding set not found" in capsys.readouterr().err
    assert main(["audit", "--embeddings", str(emb), "--out", str(tmp_path / "a.txt")]) == 2
    assert "must be one of .csv, .parquet, .json" in capsys.readouterr().err


def test_help_shows_examples(capsys):
    for cmd in ("audit", "neighbors"):
        assert main([cmd, "--help"]) == 0
        assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_audit_confident_rows_and_curve(tmp_path, ext, capsys):
    emb = _write_set(tmp_path / "emb", n=120)
    out, curve = tmp_path / f"audit{ext}", tmp_path / f"curve{ext}"
    rc = main(["audit", "--embeddings", str(emb), "--pools", "10,full", "--k", "1", "--confident", "0.9,0.99",
               "--confident-calibration", "30", "--confident-curve", str(curve), "--out", str(out)])
    assert rc == 0
    frame, prov = read_table(out)
    conf = frame[frame.metric.isin(["relinked_best", "relinked_calibrated"])]
    assert len(conf) == 2 * 2 * 2 * 2 * 2  # direction x level x N x target x attacker
    assert set(conf.precision_target) == {0.9, 0.99} and (conf.K == 0).all() and (conf.estimator == "exact").all()
    assert frame.loc[frame.metric == "recall", "precision_target"].isna().all()
    pr, _ = read_table(curve)
    assert list(pr.columns)[:8] == ["direction", "level", "N", "threshold", "expected_correct", "expected_links",
                                    "precision", "recall"]
    assert prov["settings"]["confident"] == [0.9, 0.99]


def test_audit_confident_curve_needs_targets(tmp_path, capsys):
    emb = _write_set(tmp_path / "emb")
    assert main(["audit", "--embeddings", str(emb), "--confident-curve", str(tmp_path / "c.csv"),
                 "--out", str(tmp_path / "a.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--confident-curve needs --confident" in err[0]
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "c.csv").exists()
