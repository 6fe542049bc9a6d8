"""`relink report --mitigated` on a real `relink mitigate` output (a tiny open_clip model, Opacus)."""

import json

import pytest

from dp_fixtures import tiny_model_set
from relink.cli import main as relink_main
from test_report_fixtures import run

pytestmark = pytest.mark.slow  # a real Opacus run on a tiny model


@pytest.fixture(scope="module")
def mitigated(tmp_path_factory):
    ckpt, es_dir = tiny_model_set(80)
    root = tmp_path_factory.mktemp("real")
    # the report reads the study folder (the re-projected sets); the release folder holds only heads and record
    rc = relink_main(["mitigate", "--embeddings", str(es_dir), "--epsilon", "2", "--delta", "1e-4", "--epochs", "2",
                      "--batch-size", "8", "--lr", "0.01", "--out", str(root / "release"), "--study", str(root / "dp")])
    assert rc == 0
    return ckpt, es_dir, root / "dp"


def test_report_reads_a_real_mitigate_output(mitigated, tmp_path, capsys):
    ckpt, es_dir, dp = mitigated
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    rc, _, err = run(["--embeddings", str(es_dir), "--split", "all", "--out", str(out), "--json", str(js),
                      "--attacker-pool", "40",
                      "--top-k", "5", "--bootstrap", "100", "--min-cell", "5", "--mitigated", str(dp)], capsys)
    assert rc == 0, err
    doc = json.loads(js.read_text())
    (run_,) = doc["mitigation"]["runs"]
    record = json.loads((dp / "privacy.json").read_text())
    p = run_["privacy"]
    assert p["epsilon"] == pytest.approx(record["epsilon"]) and p["delta"] == record["delta"]
    assert p["accountant"] == record["accountant"] and p["privacy_unit"] == record["privacy_unit"]
    assert isinstance(p["noise_seed"], str) and p["noise_seed"]
    assert record["for_release"] is True and "get no guarantee" in record["bank_note"]
    before = next(r for r in doc["risk"] if r["direction"] == "image_to_report" and r["level"] == "study"
                  and r["K"] == 1)
    after = next(r for r in run_["risk"] if r["direction"] == "image_to_report" and r["level"] == "study"
                 and r["K"] == 1)
    drop = next(d for d in run_["drop"] if d["direction"] == "image_to_report" and d["level"] == "study"
                and d["K"] == 1)
    assert drop["recall_drop"] == pytest.approx(before["recall"] - after["recall"], abs=1e-12)
    # the checkpoint's path (a path of this machine) is echoed nowhere
    for text in (out.read_text(), js.read_text()):
        assert str(ckpt) not in text and str(dp) not in text
