"""`relink cohort mimic-cxr` on tiny trees in the official MIMIC-CXR-JPG + reports layout."""

import numpy as np
import pandas as pd
import pytest

from helpers.official import (MimicStudy, build_mimic, default_mimic_studies, edit_table, mimic_image_path,
                              mimic_report, mimic_report_path)
from relink.cli import main
from relink.cohort import read_cohort
from relink.errors import RelinkError
from relink.labels import CHEXPERT_LABELS
from relink.loaders import load_mimic_cxr

META = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT = "mimic-cxr-2.0.0-split.csv.gz"
CHEX = "mimic-cxr-2.0.0-chexpert.csv.gz"


@pytest.fixture
def tree(tmp_path):
    images, reports = build_mimic(tmp_path)
    return images, reports, tmp_path / "out" / "mimic.parquet"


def run_cli(images, reports, out, *extra):
    return main(["cohort", "mimic-cxr", "--images", str(images), "--reports", str(reports),
                 "--out", str(out), *extra])


def by_pair(frame):
    return frame.set_index("pair_id")


def test_official_layout_maps_onto_the_contract(tree, capsys):
    images, reports, out = tree
    assert run_cli(images, reports, out) == 0
    assert "wrote 4 pairs from 3 patients" in capsys.readouterr().out
    cohort = read_cohort(out, check_images="exists")
    rows = by_pair(cohort.frame)
    # one row per study with a frontal image; the lateral-only study is gone
    assert sorted(rows.index) == ["aa000001-pa", "bb000002-pa", "cc000001-early", "ee000001-pa"]
    assert cohort.frame["study_id"].is_unique and "50000004" not in set(cohort.frame["study_id"])
    assert cohort.image_root == images.resolve()
    r = rows.loc["aa000001-pa"]
    assert (r.patient_id, r.study_id, r.view, r.cohort) == ("10000001", "50000001", "PA", "mimic-cxr")
    assert r.image_path == "files/p10/p10000001/s50000001/aa000001-pa.jpg"
    assert r.report == "Lungs are clear. No acute process."
    assert (r["Cardiomegaly"], r["Edema"], r["Pneumothorax"]) == (1.0, -1.0, 0.0)  # uncertain kept
    assert np.isnan(r["Lung Opacity"])  # blank -> missing
    assert dict(zip(rows.index, rows["split"])) == {
        "aa000001-pa": "train", "bb000002-pa": "train", "cc000001-early": "validate", "ee000001-pa": "test"}
    assert rows.loc["bb000002-pa", "report"] == "Small left effusion."  # impression only
    assert rows.loc["cc000001-early", "report"] == "Heart size is normal. No pneumothorax."  # last paragraph
    assert rows.loc["ee000001-pa", CHEXPERT_LABELS].isna().all()  # study absent from the label table


def test_one_image_per_study_prefers_views_in_order_then_earliest(tree):
    images, reports, _ = tree
    result = load_mimic_cxr(images, reports, progress=False)
    chosen = dict(zip(result.frame["study_id"], result.frame["pair_id"]))
    assert chosen["50000002"] == "bb000002-pa"  # PA beats an earlier AP
    assert chosen["50000003"] == "cc000001-early"  # same view: earliest StudyTime
    ap_first = load_mimic_cxr(images, reports, views=("AP", "PA"), progress=False)
    assert dict(zip(ap_first.frame["study_id"], ap_first.frame["pair_id"]))["50000002"] == "bb000001-ap"


def test_views_and_sections_options(tree):
    images, reports, out = tree
    assert run_cli(images, reports, out, "--views", "ap", "--sections", "impression") == 0
    frame = by_pair(read_cohort(out).frame)
    assert set(frame.index) == {"bb000001-ap", "cc000001-early"}
    assert set(frame["view"]) == {"AP"}
    assert frame.loc["bb000001-ap", "report"] == "Small left effusion."


def test_uncompressed_tables_and_reports_files_folder_are_accepted(tree):
    images, reports, _ = tree
    for name in (META, SPLIT, CHEX):
        pd.read_csv(images / name, dtype=str).to_csv(images / name[:-3], index=False)
        (images / name).unlink()
    result = load_mimic_cxr(images, reports / "files", progress=False)
    assert len(result.frame) == 4 and result.n_skipped == 0


def _delete_image(images, reports):
    mimic_image_path(images, "10000001", "50000001", "aa000001-pa").unlink()


def _empty_image(images, reports):
    mimic_image_path(images, "10000001", "50000001", "aa000001-pa").write_bytes(b"")


def _empty_report(images, reports):
    mimic_report_path(reports, "10000001", "50000002").write_text("            FINAL REPORT\n")


def _delete_report(images, reports):
    mimic_report_path(reports, "10000001", "50000002").unlink()


def _latin1_report(images, reports):
    text = mimic_report(findings="SECRETWORD caf\u00e9 effusion.", impression="Ok.")
    mimic_report_path(reports, "10000001", "50000001").write_bytes(text.encode("latin-1"))


def _duplicate_dicom(images, reports):
    edit_table(images / META, lambda f: pd.concat([f, f[f.dicom_id == "aa000001-pa"]], ignore_index=True))


def _label_two(images, reports):
    def fn(f):
        f.loc[f.study_id == "50000001", "Cardiomegaly"] = "2.0"
        return f
    edit_table(images / CHEX, fn)


def _escaping_dicom(images, reports):
    evil = "../../../../../ee000001-pa"
    for name in (META, SPLIT):
        edit_table(images / name, lambda f: f.replace({"dicom_id": {"ee000001-pa": evil}}))


def _unknown_split(images, reports):
    edit_table(images / SPLIT, lambda f: f.replace({"split": {"validate": "val"}}))


BAD_INPUTS = [
    # (break, message fragment, skip kind, pair dropped by --skip-bad)
    (_delete_image, "image file not found", "missing image", "aa000001-pa"),
    (_empty_image, "image file is empty", "missing image", "aa000001-pa"),
    (_empty_report, "no usable section", "empty report", "bb000002-pa"),
    (_delete_report, "report file not found", "missing report", "bb000002-pa"),
    (_latin1_report, "s50000001.txt", "non-UTF-8 report", "aa000001-pa"),
    (_duplicate_dicom, "duplicate dicom_id aa000001-pa", "duplicate pair_id", None),
    (_label_two, "label 'Cardiomegaly' holds another number", "bad label", "aa000001-pa"),
    (_escaping_dicom, "escapes", "image path escapes root", "ee000001-pa"),
    (_unknown_split, "split 'val' is not train, validate or test", "bad split", "cc000001-early"),
]


@pytest.mark.parametrize("breaker, fragment, kind, dropped", BAD_INPUTS, ids=[b[0].__name__ for b in BAD_INPUTS])
def test_bad_input_fails_with_one_line_or_is_skipped(tree, capsys, breaker, fragment, kind, dropped):
    images, reports, out = tree
    breaker(images, reports)
    assert run_cli(images, reports, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("relink cohort: error: ")
    assert fragment in err and "Traceback" not in err and "SECRETWORD" not in err
    assert not out.exists()  # no half-written manifest, no temporary left behind
    assert not out.parent.exists() or not list(out.parent.iterdir())

    assert run_cli(images, reports, out, "--skip-bad") == 0
    captured = capsys.readouterr()
    assert f"skipped 1 bad row(s): 1 {kind}" in captured.err and "SECRETWORD" not in captured.err
    pairs = set(read_cohort(out).frame["pair_id"])
    expected = {"aa000001-pa", "bb000002-pa", "cc000001-early", "ee000001-pa"} - {dropped}
    assert pairs == expected


def test_non_utf8_report_error_names_the_txt_file(tree):
    images, reports, _ = tree
    _latin1_report(images, reports)
    with pytest.raises(RelinkError, match=r"not valid UTF-8 .*p10000001[/\\]s50000001\.txt"):
        load_mimic_cxr(images, reports, progress=False)


@pytest.mark.parametrize("table, column", [(META, "ViewPosition"), (SPLIT, "split"), (CHEX, "Edema")])
def test_missing_official_column_is_an_error_even_with_skip_bad(tree, capsys, table, column):
    images, reports, out = tree
    edit_table(images / table, lambda f: f.drop(columns=column))
    assert run_cli(images, reports, out, "--skip-bad") == 2
    err = capsys.readouterr().err
    assert table in err and f"missing column(s): {column}" in err and not out.exists()


def test_missing_table_or_folders_are_clear_errors(tree, capsys):
    images, reports, out = tree
    assert run_cli(images, tmp := images.parent / "nowhere", out) == 2
    assert f"--reports folder not found: {tmp}" in capsys.readouterr().err
    (images / CHEX).unlink()
    assert run_cli(images, reports, out) == 2
    assert "chexpert label table not found" in capsys.readouterr().err


def test_study_absent_from_split_table_is_a_bad_row(tmp_path):
    studies = default_mimic_studies()
    images, reports = build_mimic(tmp_path, studies)
    edit_table(images / SPLIT, lambda f: f[f.dicom_id != "ee000001-pa"])
    with pytest.raises(RelinkError, match="dicom_id ee000001-pa has no row in"):
        load_mimic_cxr(images, reports, progress=False)
    result = load_mimic_cxr(images, reports, skip_bad=True, progress=False)
    assert result.skipped == {"bad split": 1} and "ee000001-pa" not in set(result.frame["pair_id"])


def test_every_row_bad_is_an_error_not_an_empty_cohort(tmp_path):
    studies = [MimicStudy("10000001", "50000001", "train", None, [("aa1", "PA", 1, 1.0)], {})]
    images, reports = build_mimic(tmp_path, studies)
    with pytest.raises(RelinkError, match="no usable rows left.*1 missing report"):
        load_mimic_cxr(images, reports, skip_bad=True, progress=False)


def test_corrupt_image_passes_the_stat_check_but_not_decode_images(tree, capsys):
    images, reports, out = tree
    mimic_image_path(images, "10000001", "50000001", "aa000001-pa").write_bytes(b"not a jpeg at all")
    assert run_cli(images, reports, out) == 0  # default: existence and size only
    assert "aa000001-pa" in set(read_cohort(out).frame["pair_id"])
    capsys.readouterr()
    assert run_cli(images, reports, out, "--decode-images") == 2
    assert "image file unreadable (UnidentifiedImageError)" in capsys.readouterr().err
    assert run_cli(images, reports, out, "--decode-images", "--skip-bad") == 0
    assert "1 missing image" in capsys.readouterr().err
    assert "aa000001-pa" not in set(read_cohort(out).frame["pair_id"])
