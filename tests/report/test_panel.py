"""The attacker panel: several EmbeddingSets of the same rows, one per model an attacker could use.

Checked against the reports of each set alone (the independent reference):
the panel's verdict is the worst of them, each model's row holds the numbers
its own report gives, and the page shows one row per model. Sets of other
rows are refused with one line naming the set and the first differing row.
"""

import json
import re

import numpy as np
import pandas as pd
import pytest

from relink.report.threat import LEVELS_ORDER
from helpers.report import META, report_args, rows_frame, run, same_json as same, write_set

N_ROWS = 400


def model(name: str, fingerprint: str) -> dict:
    return {**META, "model": name, "weights_fingerprint": fingerprint}


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    """The custodian's model barely aligned, two public models of the same rows: one strong, one moderate."""
    root = tmp_path_factory.mktemp("panel")
    rows = rows_frame(N_ROWS, seed=3)
    sets = {
        "custodian": write_set(root / "custodian", n=N_ROWS, noise=None, seed=31, rows=rows),
        "public-strong": write_set(root / "strong", n=N_ROWS, noise=0.6, seed=32, rows=rows,
                                   meta=model("public-strong-vit", "aaaa000000000002")),
        "public-moderate": write_set(root / "moderate", n=N_ROWS, noise=4.0, seed=33, rows=rows,
                                     meta=model("public-moderate-vit", "bbbb000000000003")),
    }
    return root, sets


def _report(capsys, folder, sets, name, *extra):
    out, js = folder / f"{name}.html", folder / f"{name}.json"
    args = report_args(sets[0], out, "--json", str(js), "--split", "all", *extra)
    args[1:2] = [str(s) for s in sets]
    rc, stdout, err = run(args, capsys)
    assert rc == 0, err
    return out.read_text(), json.loads(js.read_text())


@pytest.fixture(scope="module")
def alone(panel, tmp_path_factory):
    """Each set's own report (no panel)."""
    from relink.cli import main

    root, sets = panel
    out = tmp_path_factory.mktemp("alone")
    docs = {}
    for name, folder in sets.items():
        js = out / f"{name}.json"
        assert main(["report", *report_args(folder, out / f"{name}.html", "--json", str(js), "--split", "all")]) == 0
        docs[name] = json.loads(js.read_text())
    return docs


def test_the_panel_verdict_is_the_worst_and_each_model_has_its_row(panel, alone, tmp_path, capsys):
    root, sets = panel
    html, doc = _report(capsys, tmp_path, list(sets.values()), "panel", "--audit", str(tmp_path / "t.csv"))
    levels = {name: d["verdict"]["level"] for name, d in alone.items()}
    assert levels["public-strong"] == "high" and levels["custodian"] != "high"  # the panel matters here
    worst = max(levels.values(), key=LEVELS_ORDER.index)
    assert doc["verdict"]["level"] == worst == "high"
    assert doc["panel"]["worst"] == worst and doc["panel"]["size"] == 3
    # a row per model, in the order given, the custodian's first; each with its own report's numbers
    models = doc["panel"]["models"]
    assert [m["role"] for m in models] == ["custodian", "attacker", "attacker"]
    for m, name in zip(models, sets):
        assert m["verdict"]["level"] == levels[name]
        assert same(m["risk"], alone[name]["risk"])
    assert [m["model"] for m in models] == [alone[n]["threat_model"]["model"] for n in sets]
    # the verdict names the model that set it; every model's judged rows are in the verdict table
    assert {r["model"] for r in doc["verdict"]["set_by"]} >= {models[1]["model"]}
    assert {r["model"] for r in doc["verdict"]["rows"]} == {m["model"] for m in models}
    # the page: one row per model in the panel table, the model column in the verdict table
    table = re.search(r'<table id="panel-table">(.*?)</table>', html, re.S).group(1)
    assert table.count('<tr class="panel-model">') == 3
    for m in models:
        assert m["model"] in table
    # the metric table keeps every model's rows
    frame = pd.read_csv(tmp_path / "t.csv")
    assert set(frame["model"]) == {m["model"] for m in models}
    # the rest of the page is the custodian's: the headline is its own report's
    assert same(doc["headline"], alone["custodian"]["headline"])


def test_two_sets_give_the_worse_of_the_two(panel, alone, tmp_path, capsys):
    _, sets = panel
    _, doc = _report(capsys, tmp_path, [sets["custodian"], sets["public-moderate"]], "two")
    want = max((alone["custodian"]["verdict"]["level"], alone["public-moderate"]["verdict"]["level"]),
               key=LEVELS_ORDER.index)
    assert doc["verdict"]["level"] == want and doc["panel"]["size"] == 2


def test_a_set_listing_the_rows_in_another_order_is_aligned(panel, tmp_path, capsys):
    root, sets = panel
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    order = np.random.default_rng(0).permutation(N_ROWS)
    rows = pd.read_parquet(sets["public-strong"] / "rows.parquet")
    rows.iloc[order].to_parquet(shuffled / "rows.parquet", index=False)
    for name in ("image", "text"):
        np.save(shuffled / f"{name}.npy", np.load(sets["public-strong"] / f"{name}.npy")[order])
    (shuffled / "meta.json").write_text((sets["public-strong"] / "meta.json").read_text())
    _, as_given = _report(capsys, tmp_path, [sets["custodian"], sets["public-strong"]], "given")
    _, aligned = _report(capsys, tmp_path, [sets["custodian"], shuffled], "aligned")
    assert same(aligned["panel"]["models"][1]["risk"], as_given["panel"]["models"][1]["risk"])


def _other_rows(tmp_path, base, edit, name="other"):
    rows = edit(pd.read_parquet(base / "rows.parquet"))
    return write_set(tmp_path / name, n=len(rows), noise=1.0, seed=5, rows=rows,
                     meta=model("public-vit", "cccc000000000004"))


@pytest.mark.parametrize("edit, says", [
    (lambda r: r.assign(pair_id=r["pair_id"].where(r.index != 6, "another-pair")), "row 7 of the first set"),
    (lambda r: r.iloc[:-1].reset_index(drop=True), "399 audited pairs, the first set 400"),
    (lambda r: r.assign(patient_id=r["patient_id"].where(r.index != 9, "another-patient")), "row 10 gives its pair "
                                                                                            "another patient"),
])
def test_sets_of_other_rows_are_refused_with_one_line(panel, tmp_path, capsys, edit, says):
    _, sets = panel
    other = _other_rows(tmp_path, sets["custodian"], edit)
    out = tmp_path / "r.html"
    args = report_args(sets["custodian"], out, "--split", "all")
    args[1:2] = [str(sets["custodian"]), str(other)]
    rc, stdout, err = run(args, capsys)
    line = err.strip()
    assert rc == 2 and "\n" not in line and line.startswith("relink report: error: --embeddings ")
    assert str(other) in line and "not the same rows" in line and says in line, line
    assert "another-pair" not in line and "another-patient" not in line and "pat0" not in line  # no content
    assert not out.exists()


def test_the_split_is_applied_to_every_set_and_rows_are_named_in_the_file(tmp_path, capsys):
    rows = rows_frame(300, seed=8)
    a = write_set(tmp_path / "a", n=300, noise=1.0, seed=1, rows=rows)
    changed = rows.copy()
    held = np.flatnonzero(changed["split"].to_numpy() == "test")
    changed.loc[held[4], "pair_id"] = "renamed"
    b = write_set(tmp_path / "b", n=300, noise=1.0, seed=2, rows=changed, meta=model("public-vit", "dddd000000000005"))
    args = report_args(a, tmp_path / "r.html", "--split", "test")
    args[1:2] = [str(a), str(b)]
    rc, _, err = run(args, capsys)
    assert rc == 2 and f"row {held[4] + 1} of the first set" in err, err  # the file's row, not the split's
    # the validate rows differ nowhere: a panel of the validate split is fine
    args = report_args(a, tmp_path / "v.html", "--split", "validate", pool=20)
    args[1:2] = [str(a), str(b)]
    assert run(args, capsys)[0] == 0


def test_the_same_set_twice_is_refused(panel, tmp_path, capsys):
    _, sets = panel
    args = report_args(sets["custodian"], tmp_path / "r.html", "--split", "all")
    args[1:2] = [str(sets["custodian"]), str(sets["custodian"])]
    rc, _, err = run(args, capsys)
    assert rc == 2 and "--embeddings" in err and "twice" in err


def test_the_flag_may_also_be_repeated(panel, tmp_path, capsys):
    _, sets = panel
    js = tmp_path / "r.json"
    args = report_args(sets["custodian"], tmp_path / "r.html", "--json", str(js), "--split", "all",
                       "--embeddings", str(sets["public-strong"]))
    rc, stdout, err = run(args, capsys)
    assert rc == 0, err
    doc = json.loads(js.read_text())
    assert doc["panel"]["size"] == 2 and doc["verdict"]["level"] == "high"
    assert "public-strong-vit (a model of the attacker panel)" in stdout  # the command says who set it
