"""Small audits never crash (issue 23 item 4): a 2-row set, a one-patient set and a --min-cell larger than the set
each give a page and JSON (the first two an inconclusive verdict); a figure that cannot be drawn becomes one sentence, and an
interval from fewer than two patients is absent (null), never a number."""

import json

import pytest

from helpers.report import rows_frame, run, write_set


@pytest.mark.parametrize("case", ["two rows", "one patient", "min cell above the set"])
def test_small_audits_give_a_page_not_a_crash(tmp_path, capsys, case):
    n = {"two rows": 2, "one patient": 4, "min cell above the set": 120}[case]
    rows = rows_frame(n, 3)
    if case == "one patient":
        rows["patient_id"] = "pat-only"
    emb = write_set(tmp_path / "emb", n=n, noise=0.5, seed=3, rows=rows)
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    pool = {"two rows": "2", "one patient": "4", "min cell above the set": "100"}[case]
    extra = ["--min-cell", "1000"] if case == "min cell above the set" else []
    rc, stdout, err = run(["--embeddings", str(emb), "--out", str(out), "--json", str(js), "--attacker-pool", pool,
                           "--top-k", "1", *extra], capsys)
    assert rc == 0, err
    doc = json.loads(js.read_text())
    html = out.read_text()
    assert "Traceback" not in html
    if case != "min cell above the set":  # too few patients for any verdict but inconclusive
        assert doc["verdict"]["level"] == "inconclusive" and "INCONCLUSIVE" in stdout
        assert "inconclusive" in html.lower()
    if case == "one patient":  # one patient: no interval at all
        assert all(r["lift_ci"] == [None, None] for r in doc["verdict"]["rows"])
