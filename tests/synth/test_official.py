"""Synthetic datasets in the official layouts, read back by the real loaders and `relink cohort`.

The generator's ground truth (``OfficialDataset``) is checked twice: against
the files themselves (parsed here with pandas/json, independently of the
loaders) and against what the loaders return.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.cohort import tree_digest
from relink import cli
from relink.cohort import read_cohort
from relink.labels import CHEXPERT_LABELS
from relink.loaders import load_chexpert_plus, load_mimic_cxr
from relink.synth.official_chexpert import write_chexpert_plus
from relink.synth.official_mimic import write_mimic_cxr

PATIENTS = 60
SEED = 5
PHRASE = "amber walrus counts seven quiet lanterns before dawn"
MIMIC_CANARY, PLUS_CANARY = "19999999", "patient99999"
LABELS = list(CHEXPERT_LABELS)
COMPARED = ["patient_id", "study_id", "split", "view", "report"]


@pytest.fixture(scope="module")
def mimic(tmp_path_factory):
    out = tmp_path_factory.mktemp("official") / "mimic"
    return write_mimic_cxr(out, PATIENTS, SEED, canary_patient=MIMIC_CANARY, canary_phrase=PHRASE,
                           canary_reports=3, progress=False)


@pytest.fixture(scope="module")
def plus(tmp_path_factory):
    out = tmp_path_factory.mktemp("official") / "plus"
    return write_chexpert_plus(out, PATIENTS, SEED, canary_patient=PLUS_CANARY, canary_phrase=PHRASE,
                               canary_reports=3, progress=False)


def same_rows(loaded: pd.DataFrame, truth) -> None:
    """Loader rows equal the generator's expected rows, pair by pair (labels NaN-aware)."""
    got = loaded.set_index("pair_id").sort_index()
    want = truth.expected.set_index("pair_id").sort_index()
    assert list(got.index) == list(want.index)
    for col in COMPARED:
        assert got[col].astype(str).tolist() == want[col].astype(str).tolist(), col
    np.testing.assert_array_equal(got[LABELS].to_numpy(float), want[LABELS].to_numpy(float))


# ------------------------------------------------------------------ MIMIC-CXR


def test_mimic_files_hold_the_stated_quirks(mimic):
    images, reports = mimic.roots["images"], mimic.roots["reports"]
    meta = pd.read_csv(images / "mimic-cxr-2.0.0-metadata.csv.gz", dtype=str)
    split = pd.read_csv(images / "mimic-cxr-2.0.0-split.csv.gz", dtype=str)
    chex = pd.read_csv(images / "mimic-cxr-2.0.0-chexpert.csv.gz", dtype=str)
    frontal = meta["ViewPosition"].isin(["PA", "AP"]).groupby(meta["study_id"]).sum()
    q = mimic.quirks
    assert len(meta) == len(split) == mimic.images and meta["dicom_id"].is_unique
    assert meta["study_id"].nunique() == mimic.studies and meta["subject_id"].nunique() == PATIENTS
    assert (frontal == 0).sum() == q["lateral_only_studies"] > 0
    assert (frontal == 2).sum() == q["two_frontal_studies"] > 0
    views = meta[meta["ViewPosition"].isin(["PA", "AP"])].groupby("study_id")["ViewPosition"].nunique()
    assert (views == 2).sum() == q["ap_and_pa_studies"] > 0
    assert (frontal > 0).sum() == mimic.frontal_studies
    assert len(chex) == mimic.studies - q["unlabelled_studies"] and q["unlabelled_studies"] > 0
    assert (chex[LABELS] == "-1.0").any(axis=1).sum() == q["uncertain_label_studies"] > 0
    # patient-disjoint official split, one row per image
    assert (split.groupby("subject_id")["split"].nunique() == 1).all()
    per_split = split.drop_duplicates("subject_id")["split"].value_counts().to_dict()
    assert per_split == {k: v for k, v in mimic.patients_per_split.items() if v}
    # every study has a report file; report quirks by their headers
    texts = {p.stem: p.read_text() for p in (reports / "files").rglob("s*.txt")}
    assert len(texts) == mimic.studies
    has = lambda h: {s for s, t in texts.items() if f"\n {h}:" in t}  # noqa: E731
    assert len(has("IMPRESSION") - has("FINDINGS")) == q["impression_only_reports"] > 0
    assert len(has("FINDINGS") - has("IMPRESSION")) == q["findings_only_reports"] > 0
    assert len(set(texts) - has("FINDINGS") - has("IMPRESSION")) == q["no_headers_reports"] > 0
    with Image.open(next((images / "files").rglob("*.jpg"))) as im:
        assert im.format == "JPEG" and im.mode == "L" and im.size == (64, 64)
    assert gzip.open(images / "mimic-cxr-2.0.0-split.csv.gz").read().startswith(b"dicom_id,study_id,subject_id,split\n")


def test_mimic_loader_returns_one_pair_per_frontal_study(mimic):
    result = load_mimic_cxr(mimic.roots["images"], mimic.roots["reports"], progress=False)
    frame = result.frame
    assert result.n_skipped == 0
    assert len(frame) == mimic.frontal_studies == mimic.studies - mimic.quirks["lateral_only_studies"]
    assert frame["study_id"].is_unique
    same_rows(frame, mimic)
    assert frame["split"].value_counts().to_dict() == {k: v for k, v in mimic.pairs_per_split.items() if v}
    kinds = mimic.expected.set_index("pair_id")["report_kind"]
    rows = frame.set_index("pair_id")
    # impression-only and header-less reports are kept, with their text
    assert (kinds == "impression_only").sum() > 0 and (kinds == "no_headers").sum() > 0
    assert rows.loc[kinds.index[kinds == "no_headers"], "report"].str.len().min() > 20
    # two frontal images: PA chosen whenever the study has one
    two = mimic.expected.loc[mimic.expected["n_frontal"] == 2, "pair_id"]
    assert len(two) > 0 and set(rows.loc[two, "view"]) <= {"PA", "AP"}
    assert rows[LABELS].isna().all(axis=1).sum() >= 1  # unlabelled studies kept, labels missing
    assert (rows[LABELS] == -1).any(axis=1).sum() > 0


def test_mimic_cli_reads_the_tree(mimic, tmp_path, capsys):
    out = tmp_path / "mimic.parquet"
    argv = ["cohort", "mimic-cxr", "--images", str(mimic.roots["images"]), "--reports",
            str(mimic.roots["reports"]), "--out", str(out)]
    assert cli.main(argv) == 0
    assert f"wrote {mimic.frontal_studies} pairs" in capsys.readouterr().out
    cohort = read_cohort(out, check_images="open")
    same_rows(cohort.frame, mimic)


# ------------------------------------------------------------------ CheXpert Plus


def test_plus_files_hold_the_stated_quirks(plus):
    root = plus.roots["root"]
    table = pd.read_csv(root / "df_chexpert_plus_240401.csv", dtype=str)
    q = plus.quirks
    assert len(table) == plus.images and table["path_to_image"].str.endswith(".jpg").all()
    pngs = {p.relative_to(root / "PNG").as_posix() for p in (root / "PNG").rglob("*.png")}
    assert pngs == set(table["path_to_image"].str[:-4] + ".png")  # .jpg in the CSV, .png on disk
    study = table["path_to_image"].str.rsplit("/", n=1).str[0]
    frontal = (table["frontal_lateral"] == "Frontal").groupby(study).sum()
    assert study.nunique() == plus.studies
    assert (frontal == 0).sum() == q["lateral_only_studies"] > 0
    assert (frontal == 2).sum() == q["two_frontal_studies"] > 0
    first = table.assign(_study=study).drop_duplicates("_study")  # one row per study
    assert (first["section_findings"].isna()).sum() == q["impression_only_reports"] > 0
    assert (first["section_impression"].isna()).sum() == q["findings_only_reports"] > 0
    assert set(table["split"]) == {"train", "valid"}
    assert (table.groupby("deid_patient_id")["split"].nunique() == 1).all()
    assert table.drop_duplicates("deid_patient_id")["split"].value_counts().to_dict() == plus.patients_per_split
    labelled = [json.loads(line)["path_to_image"]
                for line in (root / "chexbert_labels" / "impression_fixed.json").read_text().splitlines()]
    unlabelled = set(study) - {p.rsplit("/", 1)[0] for p in labelled}
    assert len(unlabelled) == q["unlabelled_studies"] > 0
    with Image.open(root / "PNG" / sorted(pngs)[0]) as im:
        assert im.format == "PNG" and im.mode == "L"


def test_plus_loader_returns_one_pair_per_frontal_study(plus):
    result = load_chexpert_plus(plus.roots["root"], progress=False)
    frame = result.frame
    assert result.n_skipped == 0
    assert len(frame) == plus.frontal_studies == plus.studies - plus.quirks["lateral_only_studies"]
    same_rows(frame, plus)
    assert frame["split"].value_counts().to_dict() == {"train": plus.pairs_per_split["train"],
                                                       "validate": plus.pairs_per_split["valid"]}
    rows = frame.set_index("pair_id")
    kinds = plus.expected.set_index("pair_id")["report_kind"]
    # a findings-only report takes its labels from findings_fixed.json, not the empty impression's
    findings_only = rows.loc[kinds.index[kinds == "findings_only"], LABELS]
    artefact = np.array([1.0 if n == "No Finding" else np.nan for n in LABELS])
    assert len(findings_only) > 0
    assert not all(np.array_equal(r, artefact, equal_nan=True) for r in findings_only.to_numpy(float))


def test_plus_cli_reads_the_tree(plus, tmp_path, capsys):
    out = tmp_path / "plus.parquet"
    assert cli.main(["cohort", "chexpert-plus", "--root", str(plus.roots["root"]), "--out", str(out)]) == 0
    assert f"wrote {plus.frontal_studies} pairs" in capsys.readouterr().out
    cohort = read_cohort(out, check_images="open")
    same_rows(cohort.frame, plus)


# ------------------------------------------------------------------ both


def test_canaries_are_planted_where_stated(mimic, plus):
    m = load_mimic_cxr(mimic.roots["images"], mimic.roots["reports"], progress=False).frame
    p = load_chexpert_plus(plus.roots["root"], progress=False).frame
    for frame, truth, canary, held_out in ((m, mimic, MIMIC_CANARY, "test"), (p, plus, PLUS_CANARY, "validate")):
        assert truth.canary_patient == canary and truth.canary_phrase == PHRASE
        with_phrase = frame.loc[frame["report"].str.contains(PHRASE, regex=False), "pair_id"]
        assert sorted(with_phrase) == sorted(truth.canary_pair_ids) and len(with_phrase) == 3
        mine = frame[frame["patient_id"] == canary]
        assert len(mine) >= 1 and set(mine["split"]) == {held_out}
        assert set(frame.loc[frame["pair_id"].isin(with_phrase), "split"]) == {held_out}
        assert canary not in set(frame.loc[frame["pair_id"].isin(with_phrase), "patient_id"])
    # in the raw files too: three report files (whitespace collapsed across wrapped lines)
    texts = [" ".join(f.read_text().split()) for f in (mimic.roots["reports"] / "files").rglob("*.txt")]
    assert sum(PHRASE in t for t in texts) == 3
    assert any(f"p{MIMIC_CANARY}" in p.parts for p in (mimic.roots["images"] / "files").rglob("*.jpg"))


@pytest.mark.parametrize("writer", [write_mimic_cxr, write_chexpert_plus])
def test_same_seed_is_byte_identical_for_any_workers(writer, mimic, plus, tmp_path):
    truth = mimic if writer is write_mimic_cxr else plus
    again = writer(tmp_path / "again", PATIENTS, SEED, canary_patient=truth.canary_patient, canary_phrase=PHRASE,
                   canary_reports=3, workers=2, progress=False)
    assert tree_digest(again.out) == tree_digest(truth.out)
    other = writer(tmp_path / "other", PATIENTS, SEED + 1, progress=False)
    assert tree_digest(other.out) != tree_digest(truth.out)


def test_cli_writes_and_refuses_an_occupied_out(tmp_path, capsys):
    out = tmp_path / "m"
    argv = ["synth", "--layout", "mimic-cxr", "--out", str(out), "--patients", "4", "--seed", "1"]
    assert cli.main(argv) == 0
    assert "in the mimic-cxr layout" in capsys.readouterr().out
    assert json.loads((out / "synth.json").read_text())["layout"] == "mimic-cxr"
    assert cli.main(argv) == 0  # an earlier synth output may be replaced
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    for layout in ("mimic-cxr", "chexpert-plus"):
        assert cli.main(["synth", "--layout", layout, "--out", str(busy), "--patients", "4", "--seed", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("relink synth: error:") and str(busy) in err[0]
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"] and (busy / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


@pytest.mark.parametrize("extra", [
    ["--layout", "mimic-cxr", "--canary-patient", "p123"],
    ["--layout", "chexpert-plus", "--canary-patient", "19999999"],
    ["--layout", "mimic-cxr", "--canary-phrase", "FINDINGS: planted"],
    ["--layout", "mimic-cxr", "--canary-reports", "2"],
    ["--canary-patient", "19999999"],
    ["--layout", "chexpert-plus", "--site", "external"],
    ["--layout", "chexpert-plus", "--splits", "0.6,0.1,0.3"],
    ["--layout", "mimic-cxr", "--patients", "2", "--canary-patient", "19999999", "--canary-phrase", "a b c"],
])
def test_cli_bad_options_exit_2_with_one_line(tmp_path, capsys, extra):
    argv = ["synth", "--out", str(tmp_path / "d"), "--patients", "4", "--seed", "0", *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("relink synth: error:")
    assert not (tmp_path / "d").exists()
