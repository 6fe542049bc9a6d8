"""No identifier and no report text in the page or the JSON; the leak scanner refuses an output that would hold one."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from relink.cohort import write_cohort
from relink.labels import CHEXPERT_LABELS
from test_report_fixtures import META, report_args, rows_frame, run, write_set

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


def test_a_local_checkpoint_path_is_not_shown(tmp_path, capsys):
    emb = write_set(tmp_path / "emb", n=200, noise=1.0, meta={**META, "model": "/home/someone/private/ckpt-ladder3.pt"})
    out = tmp_path / "r.html"
    rc, _, err = run(report_args(emb, out, "--json", str(tmp_path / "r.json")), capsys)
    assert rc == 0, err
    for text in (out.read_text(), (tmp_path / "r.json").read_text()):
        # no part of the path, not even the file name: the model is named by its weights fingerprint
        assert "/home/someone" not in text and "ckpt-ladder3" not in text
        assert f"local checkpoint (weights {META['weights_fingerprint']})" in text


def test_labels_absent_say_so(tmp_path, capsys):
    rows = rows_frame(200, labels=False)
    emb = write_set(tmp_path / "emb", n=200, noise=1.0, rows=rows)
    rc, _, err = run(report_args(emb, tmp_path / "r.html", "--json", str(tmp_path / "r.json")), capsys)
    assert rc == 0, err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert not doc["hard_negatives"]["available"] and "no CheXpert labels" in doc["hard_negatives"]["note"]
    assert not doc["concentration"]["label_groups"]["available"]
    assert set(CHEXPERT_LABELS).isdisjoint(pd.read_parquet(emb / "rows.parquet").columns)
