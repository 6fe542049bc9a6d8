"""`relink cohort chexpert-plus` on tiny trees in the official CheXpert Plus layout."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from helpers.official import PlusImage, build_plus, default_plus_images, edit_table
from relink.cli import main
from relink.cohort import read_cohort
from relink.errors import RelinkError
from relink.labels import CHEXPERT_LABELS
from relink.loaders import load_chexpert_plus

CSV = "df_chexpert_plus_240401.csv"
ALL_PAIRS = {
    "train/patient00001/study1/view1_frontal", "train/patient00001/study2/view2_frontal",
    "train/patient00002/study1/view1_frontal", "train/patient00003/study1/view1_frontal",
    "valid/patient64541/study1/view1_frontal",
}


@pytest.fixture
def root(tmp_path):
    return build_plus(tmp_path)


def run_cli(root, out, *extra):
    return main(["cohort", "chexpert-plus", "--root", str(root), "--out", str(out), *extra])


def test_official_layout_maps_onto_the_contract(root, tmp_path, capsys):
    out = tmp_path / "cp"  # a folder: gets cohort.parquet
    assert run_cli(root, out) == 0
    assert "wrote 5 pairs from 4 patients" in capsys.readouterr().out
    cohort = read_cohort(out, check_images="open")  # the chosen files are real images
    assert cohort.image_root == (root / "PNG").resolve()
    rows = cohort.frame.set_index("pair_id")
    assert set(rows.index) == ALL_PAIRS  # lateral dropped, one image per study
    r = rows.loc["train/patient00001/study1/view1_frontal"]
    assert (r.patient_id, r.study_id, r.view, r.split, r.cohort) == (
        "patient00001", "patient00001/study1", "PA", "train", "chexpert-plus")
    assert r.image_path == "train/patient00001/study1/view1_frontal.png"  # CSV says .jpg
    assert r.report == "Heart size normal. No acute disease."
    assert r["No Finding"] == 1.0 and np.isnan(r["Cardiomegaly"])
    s2 = rows.loc["train/patient00001/study2/view2_frontal"]
    assert s2.view == "PA" and s2.report == "Left effusion."  # PA over AP; impression only
    assert (s2["Pleural Effusion"], s2["Edema"]) == (1.0, -1.0)  # uncertain kept
    assert rows.loc["valid/patient64541/study1/view1_frontal", "split"] == "validate"
    assert rows.loc["train/patient00003/study1/view1_frontal", "image_path"].endswith(".jpg")  # only a .jpg on disk
    no_imp = rows.loc["train/patient00002/study1/view1_frontal"]
    # no impression section: labels come from findings_fixed.json, not the impression artefact
    assert no_imp["Support Devices"] == 1.0 and np.isnan(no_imp["No Finding"])
    assert no_imp.report == "Tube in place."


def test_label_source_and_sections_options(root, tmp_path):
    out = tmp_path / "cp.parquet"
    assert run_cli(root, out, "--labels", "report", "--sections", "impression+findings") == 0
    rows = read_cohort(out).frame.set_index("pair_id")
    r = rows.loc["train/patient00001/study1/view1_frontal"]
    assert r["Cardiomegaly"] == 0.0 and r[list(CHEXPERT_LABELS)].notna().sum() == 1
    assert r.report == "No acute disease. Heart size normal."


def test_png_png_folder_and_labels_beside_the_csv_are_found(tmp_path):
    root = build_plus(tmp_path, png_dir=("PNG", "PNG"))
    for f in (root / "chexbert_labels").iterdir():
        shutil.move(str(f), root / f.name)
    (root / "chexbert_labels").rmdir()
    result = load_chexpert_plus(root, progress=False)
    assert result.image_root == (root / "PNG" / "PNG").resolve()
    assert set(result.frame["pair_id"]) == ALL_PAIRS


def test_views_option_keeps_laterals_when_asked(root):
    result = load_chexpert_plus(root, views=("LATERAL",), progress=False)
    assert list(result.frame["pair_id"]) == ["train/patient00001/study1/view2_lateral"]


def _png(root, stem):
    return root / "PNG" / (stem + ".png")


def _delete_image(root):
    _png(root, "train/patient00002/study1/view1_frontal").unlink()


def _empty_image(root):
    _png(root, "train/patient00002/study1/view1_frontal").write_bytes(b"")


def _empty_report(root):
    def fn(f):
        f.loc[f.deid_patient_id == "patient00003", ["section_findings", "section_impression"]] = "  "
        return f
    edit_table(root / CSV, fn)


def _duplicate_row(root):
    edit_table(root / CSV, lambda f: pd.concat([f, f[f.split == "valid"]], ignore_index=True))


def _bad_label(root):
    path = root / "chexbert_labels" / "impression_fixed.json"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        if r["path_to_image"] == "train/patient00001/study1/view1_frontal.jpg":
            r["Pneumonia"] = 2
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")


def _escaping_path(root):
    extra = pd.DataFrame([{"path_to_image": "../outside/view1_frontal.jpg", "frontal_lateral": "Frontal",
                           "ap_pa": "AP", "deid_patient_id": "patient00009", "section_findings": "x",
                           "section_impression": "y", "split": "train"}])
    edit_table(root / CSV, lambda f: pd.concat([f, extra], ignore_index=True))


def _unknown_split(root):
    edit_table(root / CSV, lambda f: f.replace({"split": {"valid": "holdout"}}))


BAD_INPUTS = [
    (_delete_image, "image file not found", "missing image", "train/patient00002/study1/view1_frontal"),
    (_empty_image, "image file is empty", "missing image", "train/patient00002/study1/view1_frontal"),
    (_empty_report, "no findings or impression text", "empty report", "train/patient00003/study1/view1_frontal"),
    (_duplicate_row, "duplicate path_to_image 'valid/patient64541", "duplicate pair_id", None),
    (_bad_label, "impression_fixed.json line 1: label 'Pneumonia' holds another number", "bad label",
     "train/patient00001/study1/view1_frontal"),
    (_escaping_path, "escapes", "image path escapes root", None),
    (_unknown_split, "split 'holdout' is not train or valid", "bad split", "valid/patient64541/study1/view1_frontal"),
]


@pytest.mark.parametrize("breaker, fragment, kind, dropped", BAD_INPUTS, ids=[b[0].__name__ for b in BAD_INPUTS])
def test_bad_input_fails_with_one_line_or_is_skipped(root, tmp_path, capsys, breaker, fragment, kind, dropped):
    out = tmp_path / "out" / "cp.parquet"
    breaker(root)
    assert run_cli(root, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("relink cohort: error: ") and fragment in err
    assert not out.exists()

    assert run_cli(root, out, "--skip-bad") == 0
    assert f"skipped 1 bad row(s): 1 {kind}" in capsys.readouterr().err
    assert set(read_cohort(out).frame["pair_id"]) == ALL_PAIRS - {dropped}


@pytest.mark.parametrize("column", ["section_impression", "deid_patient_id"])
def test_missing_csv_column_is_an_error_even_with_skip_bad(root, tmp_path, capsys, column):
    edit_table(root / CSV, lambda f: f.drop(columns=column))
    assert run_cli(root, tmp_path / "cp.parquet", "--skip-bad") == 2
    assert f"{CSV}: missing column(s): {column}" in capsys.readouterr().err


def test_missing_label_key_or_file_is_an_error(root):
    path = root / "chexbert_labels" / "impression_fixed.json"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    path.write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "Edema"}) for r in lines))
    with pytest.raises(RelinkError, match=r"impression_fixed\.json: missing column\(s\): Edema"):
        load_chexpert_plus(root, skip_bad=True, progress=False)
    path.unlink()
    with pytest.raises(RelinkError, match=r"label file impression_fixed\.json not found"):
        load_chexpert_plus(root, progress=False)


def test_non_utf8_csv_is_a_clear_error(root):
    data = (root / CSV).read_bytes().replace(b"Left effusion.", "Left \u00e9panchement.".encode("latin-1"))
    (root / CSV).write_bytes(data)
    with pytest.raises(RelinkError, match=rf"cannot read .*{CSV}"):
        load_chexpert_plus(root, progress=False)


def test_missing_png_folder_is_a_clear_error(tmp_path):
    root = build_plus(tmp_path, images=[PlusImage("train/p1/s1/v1_frontal.jpg", "Frontal", "AP", "p1",
                                                  "a", "b", on_disk=None)])
    with pytest.raises(RelinkError, match="no image folder with train/ or valid/"):
        load_chexpert_plus(root, progress=False)


def test_images_without_label_records_have_missing_labels(tmp_path):
    images = default_plus_images()
    root = build_plus(tmp_path, images, labels={"impression": {}, "findings": {}})
    frame = load_chexpert_plus(root, progress=False).frame
    assert frame[list(CHEXPERT_LABELS)].isna().all().all() and len(frame) == 5


def test_decode_images_catches_a_corrupt_png(root):
    _png(root, "train/patient00002/study1/view1_frontal").write_bytes(b"\x89PNG broken")
    assert len(load_chexpert_plus(root, progress=False).frame) == 5
    with pytest.raises(RelinkError, match=r"image file unreadable .*view1_frontal\.png"):
        load_chexpert_plus(root, decode_images=True, progress=False)
