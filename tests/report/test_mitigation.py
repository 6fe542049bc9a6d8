"""Before/after from `relink mitigate`-shaped outputs: same rows, paired drops, privacy.json read defensively;
and a real `relink mitigate` output."""

import json

import numpy as np
import pytest

from helpers.report import fake_mitigated, report_args, run, write_set
from helpers.sets import tiny_model_set
from relink import embeddings
from relink.cli import main as relink_main
from relink.report import build, mitigation
from relink.report.threat import ReportSpec


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mit")
    emb = write_set(root / "emb", n=500, noise=1.2, seed=21)
    strong = fake_mitigated(root / "eps1", emb, noise=4.0, privacy={
        "private": True, "epsilon": 1.0, "delta": 1e-5, "accountant": "prv", "privacy_unit": "pair",
        "noise_seed": "secret", "for_release": True})
    weak = fake_mitigated(root / "eps0.34", emb, noise=8.0, privacy={
        "private": True, "epsilon": 0.34, "delta": 6e-6, "accountant": "rdp", "seed": 0})  # an older privacy.json
    return root, emb, strong, weak


def test_before_after_through_the_cli(setup, tmp_path, capsys):
    _, emb, strong, weak = setup
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    rc, _, err = run(report_args(emb, out, "--json", str(js), "--mitigated", str(strong), "--mitigated", str(weak)),
                     capsys)
    assert rc == 0, err
    doc = json.loads(js.read_text())
    runs = {r["name"]: r for r in doc["mitigation"]["runs"]}
    assert set(runs) == {"eps1", "eps0.34"} and doc["mitigation"]["several_epsilons"]
    before = {(r["direction"], r["level"], r["K"]): r for r in doc["risk"] if r["N"] == 100}
    for run_ in runs.values():
        for drop in run_["drop"]:
            after = next(r for r in run_["risk"] if (r["direction"], r["level"], r["K"], r["N"]) ==
                         (drop["direction"], drop["level"], drop["K"], drop["N"]))
            b = before[(drop["direction"], drop["level"], drop["K"])]
            # a mean of per-query differences over the same queries is the difference of the means
            assert drop["recall_drop"] == pytest.approx(b["recall"] - after["recall"], abs=1e-12)
            assert drop["images_drop"] == pytest.approx(500 * drop["recall_drop"])
            lo, hi = drop["recall_drop_ci"]
            assert lo <= drop["recall_drop"] <= hi
    # more noise in the text rows, less re-linkage: both drops are clearly positive, the noisier one larger
    def key(r):
        return next(d for d in r["drop"] if d["direction"] == "image_to_report" and d["level"] == "study"
                    and d["K"] == 1)

    assert key(runs["eps0.34"])["recall_drop"] > key(runs["eps1"])["recall_drop"] > 0
    assert key(runs["eps1"])["recall_drop_ci"][0] > 0
    assert runs["eps1"]["privacy"]["noise_seed"] == "secret (never written)" and runs["eps1"]["privacy"]["for_release"]
    old = runs["eps0.34"]["privacy"]
    assert "not for release" in old["noise_seed"] and old["for_release"] is False
    assert old["privacy_unit"] is None  # not recorded by that version: shown as such, not guessed
    page = out.read_text()
    assert "Each &epsilon; covers one run" in page and "not recorded" in page and "<svg" in page
    assert any("eps1" in line for line in doc["recommendation"])


def test_the_same_rows_in_another_order_and_split(setup, tmp_path, capsys):
    """A mitigated set in another row order is aligned by pair; --split applies to both sides."""
    root, emb, strong, _ = setup
    shuffled = tmp_path / "dp"
    (shuffled / "embeddings" / "internal").mkdir(parents=True)
    (shuffled / "privacy.json").write_text((strong / "privacy.json").read_text())
    es = embeddings.load(strong / "embeddings" / "internal")
    perm = np.random.default_rng(0).permutation(len(es))
    embeddings.save(es.subset(perm), shuffled / "embeddings" / "internal2")
    audited = embeddings.load(emb).split("test")
    m = mitigation.resolve(str(shuffled), audited, "test")
    assert (m.es.rows["pair_id"].to_numpy() == audited.rows["pair_id"].to_numpy()).all()
    direct = mitigation.resolve(str(strong), audited, "test")
    assert np.allclose(np.asarray(m.es.text), np.asarray(direct.es.text))
    rc, _, err = run(report_args(emb, tmp_path / "r.html", "--split", "test", "--mitigated", str(shuffled)), capsys)
    assert rc == 0, err


def test_recommendation_without_mitigated_names_the_command(setup):
    _, emb, _, _ = setup
    record, _ = build.build(embeddings.load(emb), ReportSpec(attacker_pools=(100,), n_boot=100))
    assert record["verdict"]["level"] in ("elevated", "high")
    assert "relink mitigate" in record["recommendation"][0]
    assert record["mitigation"]["runs"] == []


GOOD_NEW_FIELDS = {"for_release": False, "release_reason": "the noise seed is published: for study, not for release",
                   "trained_on": {"start": "public:tiny-clip", "trunk": "random-init"},
                   "bank_note": "the negative bank's patients get no guarantee"}


@pytest.mark.parametrize("field,value", [
    ("epsilon", "inf"), ("epsilon", True), ("delta", "1e-5"), ("epsilon", [1.0]), ("private", "yes"),
    ("for_release", "false"), ("for_release", 1), ("release_reason", 3), ("trained_on", "public:x"),
    ("trained_on", {"start": 1}), ("bank_note", ["a"]), ("noise_seed", "0"), ("epochs", 2.5), ("accountant", 1),
])
def test_privacy_json_of_a_wrong_type_is_one_line_naming_the_file_and_field(setup, tmp_path, capsys, field, value):
    root, emb, strong, _ = setup
    bad = tmp_path / "bad"
    import shutil
    shutil.copytree(strong, bad)
    record = json.loads((bad / "privacy.json").read_text())
    (bad / "privacy.json").write_text(json.dumps({**record, field: value}))
    out = tmp_path / "r.html"
    rc, _, err = run(report_args(emb, out, "--mitigated", str(bad)), capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "privacy.json" in lines[0] and f"'{field}'" in lines[0] and "--mitigated" in lines[0]
    assert not out.exists()


def test_the_release_fields_are_shown_when_present_and_not_recorded_when_absent(setup, tmp_path, capsys):
    _, emb, strong, weak = setup
    new = tmp_path / "new"
    import shutil
    shutil.copytree(strong, new)
    record = json.loads((new / "privacy.json").read_text())
    (new / "privacy.json").write_text(json.dumps({**record, **GOOD_NEW_FIELDS}))
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    rc, _, err = run(report_args(emb, out, "--json", str(js), "--mitigated", str(new), "--mitigated", str(weak)),
                     capsys)
    assert rc == 0, err
    runs = {r["name"]: r["privacy"] for r in json.loads(js.read_text())["mitigation"]["runs"]}
    assert runs["new"]["for_release"] is False and runs["new"]["trained_on"] == GOOD_NEW_FIELDS["trained_on"]
    assert runs["eps0.34"]["release_reason"] is None and runs["eps0.34"]["trained_on"] is None
    page = out.read_text()
    for text in ("the noise seed is published", "public:tiny-clip", "random-init", "negative bank&#39;s patients"):
        assert text in page, text

# `relink report --mitigated` on a real `relink mitigate` output (a tiny open_clip model, Opacus).
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
