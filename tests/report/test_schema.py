"""The two outputs: a versioned JSON with the page's numbers, recognised as relink's own, rewritten in place."""

import html
import json
import re

import pytest

from helpers.report import check_document, report_args, run, write_set
from relink.io import output_owner
from relink.report.risk import about
from relink.report.schema import KEYS, SCHEMA
from relink.tables import read_table


@pytest.fixture(scope="module")
def emb(tmp_path_factory):
    return write_set(tmp_path_factory.mktemp("outputs") / "emb", n=400, noise=2.0, seed=51)


def test_json_schema_and_the_same_numbers_as_the_page(emb, tmp_path, capsys):
    out, js, table = tmp_path / "r.html", tmp_path / "r.json", tmp_path / "audit.parquet"
    rc, stdout, err = run(report_args(emb, out, "--json", str(js), "--audit", str(table), "--top-k", "5,10"), capsys)
    assert rc == 0, err
    text = js.read_text()
    doc = json.loads(text)
    check_document(doc)
    assert list(doc) == list(KEYS) and doc["schema"] == SCHEMA == "relink-report/2"
    assert doc["relink_output"] == "report" and "NaN" not in text and "Infinity" not in text
    assert doc["provenance"]["command"] == "report" and doc["settings"]["report"]["top_k"] == [5, 10]
    page = html.unescape(re.sub(r"<[^>]+>", " ", out.read_text()))
    page = re.sub(r"\s+", " ", page)
    assert doc["headline"]["sentence"] in page and doc["headline"]["sentence"] in stdout
    for row in doc["risk"]:
        assert f"{about(row['expected_images'])} ({about(row['expected_images_ci'][0])}\u2013" in page
    for rule in doc["verdict"]["rule"]:
        assert rule in page
    assert {(r["K"]) for r in doc["risk"]} == {1, 5, 10}
    frame, prov = read_table(table)
    assert prov["command"] == "report" and {"recall", "mrr"} <= set(frame.metric)
    assert set(frame[frame.metric == "recall"].N) >= {100}


def test_outputs_are_recognised_and_rewritten_without_overwrite(emb, tmp_path, capsys):
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    assert run(report_args(emb, out, "--json", str(js)), capsys)[0] == 0
    assert output_owner(out) == "report" and output_owner(js) == "report"
    first = json.loads(js.read_text())
    assert run(report_args(emb, out, "--json", str(js)), capsys)[0] == 0  # its own output: replaced in place
    second = json.loads(js.read_text())
    def strip(d):  # provenance and the generation minute change from run to run; nothing else may
        d = {k: v for k, v in d.items() if k != "provenance"}
        return {**d, "record": {k: v for k, v in d["record"].items() if k != "generated_utc"}}

    assert strip(first) == strip(second)  # same seed, same numbers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.json"]


def test_check_document_refuses_other_json():
    from relink.errors import RelinkError

    with pytest.raises(RelinkError, match="not a relink-report/2 document"):
        check_document({"schema": "something/2"})
    with pytest.raises(RelinkError, match="lacks"):
        check_document({"schema": SCHEMA})
