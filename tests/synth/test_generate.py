"""The synthetic paired cohort: contract, determinism, splits, anatomy, labels, sites, CLI."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.cohort import tree_digest
from relink import cli
from relink.cohort import read_cohort, validate
from relink.errors import RelinkError
from relink.labels import CHEXPERT_LABELS
from relink.synth import generate as gen, generate_cohort
from relink.synth.anatomy import Device, Finding, sample_patient, sample_study
from relink.synth.phrases import S
from relink.synth.render import density
from relink.synth.report import label_sentences

PATIENTS = 40


@pytest.fixture(scope="module")
def internal(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "internal"
    generate_cohort(out, PATIENTS, seed=3, progress=False)
    return out


@pytest.fixture(scope="module")
def external(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "external"
    generate_cohort(out, PATIENTS, seed=3, site="external", progress=False)
    return out


def test_manifest_is_a_valid_cohort(internal):
    cohort = read_cohort(internal)
    assert validate(cohort.frame, cohort.image_root, check_images="open") == []
    f = cohort.frame
    assert (f["cohort"] == "synthetic-internal").all()
    assert set(f["view"]) <= {"AP", "PA"}
    assert (f["report"] == "FINDINGS: " + f["findings"] + " IMPRESSION: " + f["impression"]).all()
    with Image.open(cohort.image_file(0)) as im:
        assert im.size == (64, 64) and im.mode == "L"


def test_same_seed_is_byte_identical_for_any_workers(internal, tmp_path):
    again = tmp_path / "again"
    generate_cohort(again, PATIENTS, seed=3, workers=2, progress=False)
    assert (again / "cohort.parquet").read_bytes() == (internal / "cohort.parquet").read_bytes()
    assert tree_digest(again) == tree_digest(internal)


def test_different_seed_gives_a_different_cohort(internal, tmp_path):
    other = tmp_path / "other"
    generate_cohort(other, PATIENTS, seed=4, progress=False)
    a, b = read_cohort(internal).frame, read_cohort(other).frame
    assert tree_digest(other) != tree_digest(internal)
    common = min(len(a), len(b))
    assert (a["report"].iloc[:common].to_numpy() != b["report"].iloc[:common].to_numpy()).mean() > 0.5


def test_splits_are_patient_disjoint_and_follow_fractions(internal):
    f = read_cohort(internal).frame
    per_patient = f.groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all()
    counts = f.drop_duplicates("patient_id")["split"].value_counts()
    assert counts.to_dict() == {"train": 24, "test": 12, "validate": 4}


def test_patients_have_several_studies(internal):
    f = read_cohort(internal).frame
    n = f.groupby("patient_id").size()
    assert len(n) == PATIENTS and n.max() > 1 and 1.8 < n.mean() < 3.6
    assert f["study_id"].is_unique and f["pair_id"].is_unique


def test_anatomy_and_long_lived_devices_persist_across_studies():
    checked = 0
    for child in np.random.SeedSequence(0).spawn(400):
        rng = np.random.default_rng(child)
        p = sample_patient(rng, 0, "x")
        if not p.devices or p.n_studies < 2:
            continue
        prev = None
        for k in range(p.n_studies):
            st = sample_study(rng, p, k, prev, "internal")
            assert all(d in st.devices for d in p.devices)
            assert all(c in st.findings for c in p.chronic)
            assert abs(st.ctr - p.ctr) < 0.12
            prev = st
        checked += 1
    assert checked >= 5


def _study(rng=None, **kw):
    rng = rng or np.random.default_rng(1)
    p = sample_patient(rng, 0, "x")
    p.chronic, p.devices = [], []
    st = sample_study(np.random.default_rng(2), p, 0, None, "internal")
    return p, replace(st, findings=[], devices=[], **kw)


@pytest.mark.parametrize("item", [
    Finding("lesion", "right", "upper", size=30, x=-70, y=-90),
    Finding("granuloma", "left", "mid", size=12, x=70, y=-20),
    Finding("opacity", "left", "mid", size=60, x=75, y=-10),
    Finding("consolidation", "right", "lower", size=60, x=-80, y=40),
    Finding("edema", "bilateral", grade="moderate"),
    Finding("atelectasis", "left", "lower", size=50),
    Finding("pneumothorax", "right", "upper", size=35, grade="moderate"),
    Finding("effusion", "left", "lower", size=60, grade="moderate"),
    Finding("pleural_thickening", "right", "upper", size=8),
    Finding("fracture", "left", rib=6, acute=False),
    Device("ett", tip_mm=40), Device("enteric", tip="stomach"), Device("cvc", "right", tip="mid SVC"),
    Device("picc", "left", tip="cavoatrial junction"), Device("pacemaker", "left", leads=2),
    Device("sternotomy"), Device("chest_tube", "right"),
], ids=lambda x: x.kind)
def test_every_finding_and_device_is_visible_at_64_px(item):
    p, st = _study()
    before = density(p, st, 64)
    if isinstance(item, Device):
        after = density(p, replace(st, devices=[item]), 64)
    else:
        after = density(p, replace(st, findings=[item]), 64)
    diff = np.abs(after - before)
    assert diff.max() > 0.08 and (diff > 0.04).sum() >= 3


def test_heart_size_is_visible():
    p, small = _study(ctr=0.42)
    _, big = _study(ctr=0.62)
    assert (density(p, big, 64) - density(p, small, 64)).sum() > 5.0


def test_labeler_rules():
    out = label_sentences([S("no pneumothorax.", PTX=0), S("possible small left pleural effusion.", PE=-1)])
    assert out["Pneumothorax"] == 0.0 and out["Pleural Effusion"] == -1.0 and math.isnan(out["No Finding"])
    assert label_sentences([S("no acute cardiopulmonary process.")])["No Finding"] == 1.0
    only_device = label_sentences([S("endotracheal tube in place.", SD=1)])
    assert only_device["No Finding"] == 1.0 and only_device["Support Devices"] == 1.0
    assert math.isnan(label_sentences([S("calcified granuloma.", other=True)])["No Finding"])
    mixed = label_sentences([S("a", PE=0), S("b", PE=-1), S("c", ED=-1), S("d", ED=1), S("e", CO=0), S("f", CO=1)])
    assert (mixed["Pleural Effusion"], mixed["Edema"], mixed["Consolidation"]) == (-1.0, 1.0, 1.0)
    assert math.isnan(mixed["Fracture"])


KEYWORDS = {  # what the labeler keys on, per observation (word-bounded, lower case)
    "Enlarged Cardiomediastinum": r"mediastin", "Cardiomegaly": r"cardiomegaly|heart|cardiac",
    "Lung Lesion": r"\bnodule|\bmass\b", "Lung Opacity": r"opacit", "Edema": r"edema|congestion",
    "Consolidation": r"consolidation", "Pneumonia": r"pneumonia", "Atelectasis": r"atelectasis",
    "Pneumothorax": r"pneumothorax", "Pleural Effusion": r"effusion", "Pleural Other": r"pleural thickening",
    "Fracture": r"fracture", "Support Devices": r"\b(?:tubes?|lines?|catheter|pacemaker|picc|icd|devices)\b",
}


def test_labels_are_legal_and_read_from_the_impression(internal, external):
    for root in (internal, external):
        f = read_cohort(root).frame
        values = f[list(CHEXPERT_LABELS)].to_numpy()
        assert np.isin(values[~np.isnan(values)], [1.0, 0.0, -1.0]).all()
        nf = f["No Finding"].to_numpy()
        assert np.isin(nf[~np.isnan(nf)], [1.0]).all()
        text = f["impression"].str.lower()
        for label, pattern in KEYWORDS.items():
            mentioned = text.str.contains(pattern).to_numpy()
            assert (mentioned == f[label].notna().to_numpy()).all(), label


def test_hedged_phrasing_gives_uncertain_labels(internal, tmp_path):
    f = read_cohort(internal).frame
    uncertain = f[(f[list(CHEXPERT_LABELS)] == -1).any(axis=1)]
    assert len(uncertain) > 0
    hedges = ("possible", "may ", "cannot", "concerning", "suspicious", "versus", "borderline",
              "congestion", "blunting", "questionable", "difficult to assess")
    assert uncertain["impression"].str.lower().apply(lambda t: any(h in t for h in hedges)).all()
    assert (f[list(CHEXPERT_LABELS)] == 0).any(axis=None)


def test_external_site_has_a_domain_shift(internal, external):
    a, b = read_cohort(internal), read_cohort(external)
    assert (b.frame["cohort"] == "synthetic-external").all() and (b.frame["split"] == "test").all()
    for col in ("pair_id", "patient_id", "study_id"):
        assert not set(a.frame[col]) & set(b.frame[col])
    assert b.frame["findings"].str.contains("LUNGS:").mean() > 0.8
    assert not a.frame["findings"].str.contains("LUNGS:").any()
    assert a.frame["report"].str.contains(r"\d mm").any() and not b.frame["report"].str.contains(r"\d mm").any()

    def pixels(c):
        return np.stack([np.asarray(Image.open(c.image_file(i)), dtype=np.float64) for i in range(30)])

    pa, pb = pixels(a), pixels(b)
    assert pb.mean() - pa.mean() > 10  # brighter (gamma) and collimated
    assert (pb[:, :, -10:] > 200).mean() > 0.05  # side marker or collimation in the corner


def test_bad_options_raise_one_clear_error(tmp_path):
    for kwargs, needle in [
        (dict(patients=0), "--patients"), (dict(size=16), "--size"),
        (dict(split_fractions=(0.5, 0.5, 0.5)), "sum to 1"),
        (dict(split_fractions=(-0.2, 0.6, 0.6)), "non-negative"), (dict(workers=0), "--workers"),
    ]:
        args = dict(patients=3, seed=0) | kwargs
        with pytest.raises(RelinkError, match=needle):
            generate_cohort(tmp_path / "x", progress=False, **args)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(RelinkError, match="not a synthetic cohort"):
        generate_cohort(tmp_path / "busy", 3, seed=0, progress=False)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_failed_run_leaves_nothing_behind(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(gen, "write_cohort", boom)
    with pytest.raises(RuntimeError):
        generate_cohort(tmp_path / "c", 3, seed=0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_and_rewrites_a_cohort(tmp_path, capsys):
    out = tmp_path / "c"
    argv = ["synth", "--out", str(out), "--patients", "4", "--seed", "2", "--size", "48", "--splits", "0.5,0.25,0.25"]
    assert cli.main(argv) == 0
    first = tree_digest(out)
    assert "pairs from 4 patients" in capsys.readouterr().out
    assert cli.main(argv) == 0  # an earlier synth output may be replaced
    assert tree_digest(out) == first
    with Image.open(read_cohort(out).image_file(0)) as im:
        assert im.size == (48, 48)


@pytest.mark.parametrize("extra", [
    ["--patients", "0"], ["--size", "16"], ["--splits", "0.5,0.5,0.5"], ["--splits", "0.6,x,0.4"],
    ["--splits=-0.1,0.6,0.5"],
])
def test_cli_bad_options_exit_2_with_one_line(tmp_path, capsys, extra):
    argv = ["synth", "--out", str(tmp_path / "c"), "--patients", "2", "--seed", "0"] + extra
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("relink synth: error:")
    assert not (tmp_path / "c").exists()
