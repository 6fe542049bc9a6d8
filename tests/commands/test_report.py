"""Bad input to `relink report`: one clear line each, exit status 2, nothing written."""

import json

import pytest

from helpers.report import fake_mitigated, report_args, run, write_set


@pytest.fixture(scope="module")
def emb(tmp_path_factory):
    return write_set(tmp_path_factory.mktemp("inputs") / "emb", n=300, noise=1.0)


def _refused(args, tmp_path, capsys, *expect):
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, out, err = run(args, capsys)
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("relink report: error:"), err
    assert "Traceback" not in err
    for text in expect:
        assert text in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, not even a temporary
    return lines[0]


def test_pool_larger_than_the_audited_set(emb, tmp_path, capsys):
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    line = _refused(report_args(emb, out, "--json", str(js), pool=301), tmp_path, capsys,
                    "--attacker-pool 301", "larger than the audited set (300 pairs)")
    # the default pool (10,000) is larger than this set too, and says so
    _refused(["--embeddings", str(emb), "--out", str(out)], tmp_path, capsys, "--attacker-pool 10000")
    assert "pair0" not in line


@pytest.mark.parametrize("extra, expect", [
    (["--released", "0"], "--released: must be an integer >= 1 and <= 1000000000, got '0'"),
    (["--released", "-5"], "--released"),
    (["--lift-elevated", "20", "--lift-high", "10"],
     "--lift-elevated 20.0 is above --lift-high 10.0: thresholds out of order"),
    (["--excess-elevated", "500"], "--excess-elevated 500.0 is above --excess-high 100.0: thresholds out of order"),
    (["--lift-high", "0.5"], "--lift-high: must be a finite number >= 1.0, got '0.5'"),
    (["--lift-high", "nan"], "--lift-high"),
    (["--fail-on", "medium"], "--fail-on"),
    (["--bootstrap", "10"], "--bootstrap: must be an integer >= 100"),
    (["--top-k", "200"], "--top-k 200: larger than the smallest --attacker-pool (100)"),
    (["--min-cell", "0"], "--min-cell"),
])
def test_bad_options(emb, tmp_path, capsys, extra, expect):
    _refused(report_args(emb, tmp_path / "r.html", *extra), tmp_path, capsys, expect)


def test_outputs_that_are_not_ours_or_the_wrong_kind(emb, tmp_path, capsys):
    theirs = tmp_path / "notes.html"
    theirs.write_text("<html>someone else's page</html>")
    _refused(report_args(emb, theirs), tmp_path, capsys, "not a relink report output")
    assert theirs.read_text() == "<html>someone else's page</html>"
    _refused(report_args(emb, tmp_path / "r.pdf"), tmp_path, capsys, "must be an .html file")
    _refused(report_args(emb, tmp_path / "r.html", "--json", str(tmp_path / "r.txt")), tmp_path, capsys, ".json file")
    _refused(report_args(emb, tmp_path / "r.html", "--json", str(tmp_path / "r.json"), "--audit",
                         str(tmp_path / "r.json")), tmp_path, capsys, "must name different files")


def test_missing_set_split_and_cohort(emb, tmp_path, capsys):
    _refused(report_args(tmp_path / "nowhere", tmp_path / "r.html"), tmp_path, capsys, "embedding set not found")
    _refused(report_args(emb, tmp_path / "r.html", "--split", "train"), tmp_path, capsys, "--split 'train'")
    _refused(report_args(emb, tmp_path / "r.html", "--cohort", str(tmp_path / "none.parquet")), tmp_path, capsys,
             "cohort manifest not found")


def test_mitigated_from_another_model(emb, tmp_path_factory, tmp_path, capsys):
    other = fake_mitigated(tmp_path_factory.mktemp("m") / "dp", emb, noise=2.0,
                           heads={"fingerprint": "x", "base_weights_fingerprint": "0000000000000bad",
                                  "base_model": "hand-made-vit"})
    _refused(report_args(emb, tmp_path / "r.html", "--mitigated", str(other)), tmp_path, capsys,
             f"--mitigated {other}", "trained from another model")
    renamed = fake_mitigated(tmp_path_factory.mktemp("m") / "dp", emb, noise=2.0,
                             heads={"fingerprint": "x", "base_model": "some-other-model"})
    _refused(report_args(emb, tmp_path / "r.html", "--mitigated", str(renamed)), tmp_path, capsys,
             "base model differs")


def test_mitigated_from_another_cohort(emb, tmp_path_factory, tmp_path, capsys):
    root = tmp_path_factory.mktemp("c")
    stranger = write_set(root / "stranger", n=300, noise=1.0, pair_fmt="other{:05d}")
    other = fake_mitigated(root / "dp", stranger, noise=2.0,
                           heads={"fingerprint": "x", "base_weights_fingerprint": "feedface00000001"})
    _refused(report_args(emb, tmp_path / "r.html", "--mitigated", str(other)), tmp_path, capsys,
             "no set under embeddings/ holds exactly the audited pairs")
    refp = fake_mitigated(root / "dp2", emb, noise=2.0, meta={"cohort_fingerprint": "0000000000000bad"})
    _refused(report_args(emb, tmp_path / "r.html", "--mitigated", str(refp)), tmp_path, capsys,
             "another cohort (cohort fingerprint differs")


def test_mitigated_that_is_not_a_mitigate_output(emb, tmp_path_factory, tmp_path, capsys):
    root = tmp_path_factory.mktemp("n")
    _refused(report_args(emb, tmp_path / "r.html", "--mitigated", str(root / "missing")), tmp_path, capsys,
             "not found")
    bare = fake_mitigated(root / "dp", emb, noise=2.0)
    (bare / "privacy.json").write_text("{not json")
    _refused(report_args(emb, tmp_path / "r.html", "--mitigated", str(bare)), tmp_path, capsys,
             "privacy.json is not valid JSON")
    plain = fake_mitigated(root / "dp2", emb, noise=2.0)
    meta_file = plain / "embeddings" / "internal" / "meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["heads"]
    meta_file.write_text(json.dumps(meta))
    _refused(report_args(emb, tmp_path / "r.html", "--mitigated", str(plain)), tmp_path, capsys,
             "records no mitigated heads")
