"""No identifier, no report text and no local path in any output; the leak scanner refuses an output that would
hold one."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from helpers.report import META, main, report_args, rows_frame, run, write_set
from relink.cohort import write_cohort
from relink.embeddings import public_model_name
from relink.labels import CHEXPERT_LABELS

CANARY = "zebra quantum lantern orchid velvet harbor crimson pylon"  # 8 words no template or number contains


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    root = tmp_path_factory.mktemp("canary")
    rows = rows_frame(360, seed=11, pair_fmt="CANARYPAIR-7f3a-{:04d}", patient_fmt="CANARYPATIENT-9c1e-{:04d}")
    rows["study_id"] = [f"CANARYSTUDY-55d0-{i:04d}" for i in range(len(rows))]
    emb = write_set(root / "emb", n=360, noise=1.5, seed=11, rows=rows)
    views = np.array(["PA", "AP", "LATERAL"])[np.arange(360) % 3]
    views[:4] = "LL"  # a view too rare to show on its own
    cohort = rows.assign(image_path=[f"img/{i}.png" for i in range(360)], view=views,
                         report=[f"Heart size is normal. {CANARY}. No pleural effusion, study {i}."
                                 for i in range(360)])
    manifest = write_cohort(cohort, root / "cohort.parquet")
    return emb, manifest, rows


def test_canary_ids_and_report_text_never_reach_the_outputs(canary, tmp_path, capsys):
    emb, manifest, rows = canary
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    rc, _, err = run(report_args(emb, out, "--json", str(js), "--cohort", str(manifest), "--min-cell", "10"), capsys)
    assert rc == 0, err
    for text in (out.read_text(), js.read_text()):
        assert "canary" not in text.lower()
        for word in CANARY.split():
            assert word not in text.lower()
        for value in rows["pair_id"].tolist()[:20] + rows["patient_id"].tolist()[:20]:
            assert value not in text
    doc = json.loads(js.read_text())
    views = doc["concentration"]["views"]
    assert views["available"] and views["merged_cells"] >= 1
    names = [g["group"] for g in views["groups"]]
    assert "LL" not in names and any("LL" in n for n in names)  # merged into a neighbour, not shown alone
    for section in ("views", "studies_per_patient"):
        assert all(g["n_pairs"] >= 10 for g in doc["concentration"][section]["groups"])
    assert sum(g["n_pairs"] for g in views["groups"]) == 360  # a partition: merged, nothing dropped


@pytest.mark.parametrize("model, needs_cohort, kind", [
    ("CANARYPAIR-7f3a-0003", False, "identifier (1 pair_id value(s))"),
    ("CANARYPATIENT-9c1e-0001", False, "identifier (1 patient_id value(s))"),
    (f"my model {CANARY}", True, "report text"),
])
def test_a_leak_refuses_both_writes(canary, tmp_path, capsys, model, needs_cohort, kind):
    """The model spec is echoed on the page: when it holds an id or report text, nothing is written."""
    _, manifest, rows = canary
    leaky = write_set(tmp_path / "leaky", n=360, noise=1.5, seed=11, rows=rows, meta={**META, "model": model})
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    extra = ["--cohort", str(manifest)] if needs_cohort else []
    rc, _, err = run(report_args(leaky, out, "--json", str(js), *extra), capsys)
    assert rc == 2
    line = err.strip()
    assert "\n" not in line and "leak scan" in line and kind in line and "nothing was written" in line
    assert "CANARY" not in line and "zebra" not in line  # the message names the kind of hit, never the value
    assert not out.exists() and not js.exists()
    assert not [p for p in tmp_path.iterdir() if re.match(r"\.r\.(html|json)\.", p.name)]  # no temporary left


def test_labels_absent_say_so(tmp_path, capsys):
    rows = rows_frame(200, labels=False)
    emb = write_set(tmp_path / "emb", n=200, noise=1.0, rows=rows)
    rc, _, err = run(report_args(emb, tmp_path / "r.html", "--json", str(tmp_path / "r.json")), capsys)
    assert rc == 0, err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert not doc["hard_negatives"]["available"] and "no CheXpert labels" in doc["hard_negatives"]["note"]
    assert not doc["concentration"]["label_groups"]["available"]
    assert set(CHEXPERT_LABELS).isdisjoint(pd.read_parquet(emb / "rows.parquet").columns)

# No local path in any output of `relink audit` or `relink report`: a canary planted in the model's location
# (meta.json's model spec, as `relink embed` records a local checkpoint) appears in no file written, no table cell,
# no provenance record and nothing printed; the model is named by its architecture and weights fingerprint.
PATH_CANARY = "Zq7canaryX"


@pytest.mark.parametrize("spec", [f"tiny-vit:/srv/{PATH_CANARY}/weights/best.pt", f"local-dir:/home/{PATH_CANARY}/rung-3",
                                  f"models/{PATH_CANARY}/rung-3", f"/home/someone/private/{PATH_CANARY}-ladder3.pt",
                                  f"C:\\{PATH_CANARY}\\ckpt.safetensors"])
def test_no_output_of_audit_or_report_holds_the_model_path(tmp_path, capsys, spec):
    emb = write_set(tmp_path / "emb", n=300, noise=1.0, seed=2, meta={**META, "model": spec})
    out = tmp_path / "out"
    out.mkdir()
    assert main(["audit", "--embeddings", str(emb), "--pools", "10,100", "--bootstrap", "100",
                 "--out", str(out / "audit.csv")]) == 0
    assert main(["audit", "--embeddings", str(emb), "--pools", "10", "--bootstrap", "100",
                 "--out", str(out / "audit.json")]) == 0
    assert main(["report", "--embeddings", str(emb), "--attacker-pool", "100", "--out", str(out / "r.html"),
                 "--json", str(out / "r.json"), "--audit", str(out / "r.csv")]) == 0
    printed = capsys.readouterr()
    texts = {p.name: p.read_text(errors="replace") for p in out.iterdir()}
    texts["stdout+stderr"] = printed.out + printed.err
    assert len(texts) >= 6  # the three tables, the page, its JSON, the printed lines, and any sidecar
    for name, text in texts.items():
        assert PATH_CANARY not in text, name
    named = json.loads(texts["r.json"])["threat_model"]["model"]
    assert META["weights_fingerprint"] in named and PATH_CANARY not in named


def test_public_names_keep_what_is_public():
    assert public_model_name("ViT-B-16:openai") == "ViT-B-16:openai"
    assert public_model_name("hf-hub:microsoft/BiomedCLIP") == "hf-hub:microsoft/BiomedCLIP"
    assert public_model_name("tiny-vit") == "tiny-vit"
    assert public_model_name("ViT-B-32:/data/x.pt", "abc") == "ViT-B-32 with a local checkpoint (weights abc)"
