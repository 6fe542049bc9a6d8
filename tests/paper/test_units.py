"""Unit tests of the paper runner's parts: profiles, chapter selection, the artifact cache,
table summaries and claim verdicts, staleness, and the privacy scanner."""

import json

import numpy as np
import pandas as pd
import pytest

from relink.errors import RelinkError
from relink.paper import cache, claims, summaries as S
from relink.paper.chapters import chapters, select
from relink.leakscan import scan_texts
from relink.paper.profiles import get_profile


def test_profile_overrides_are_typed_and_checked():
    p = get_profile("smoke", {"n_boot": "7", "pools": "10,full", "epsilons": "0.5,none", "dp_lr": "0.01"})
    assert p.n_boot == 7 and p.pools == (10, "full") and p.epsilons == (0.5, None) and p.dp_lr == 0.01
    with pytest.raises(RelinkError, match="not a profile field"):
        get_profile("smoke", {"n_bootstrap": "3"})
    with pytest.raises(RelinkError, match="cannot read"):
        get_profile("smoke", {"n_boot": "many"})
    with pytest.raises(RelinkError, match="unknown profile"):
        get_profile("mimic-iv")


def test_credentialed_profile_names_missing_environment():
    with pytest.raises(RelinkError, match="RELINK_MIMIC_IMAGES"):
        get_profile("mimic", environ={})
    p = get_profile("mimic", environ={"RELINK_MIMIC_IMAGES": "/a", "RELINK_MIMIC_REPORTS": "/b"})
    assert dict(p.data) == {"mimic_images": "/a", "mimic_reports": "/b"} and p.credentialed


def test_select_chapters_by_number_slug_or_list():
    assert [c.number for c in select(["2", "hard_negatives"])] == ["02", "03"]
    assert [c.number for c in select(["04,01"])] == ["01", "04"]
    assert len(select(None)) == len(chapters())
    with pytest.raises(RelinkError, match="unknown chapter"):
        select(["99"])


def test_cache_rebuilds_only_on_key_change_and_never_half_writes(tmp_path):
    calls = []

    def build(tmp):
        calls.append(1)
        (tmp / "out.txt").write_text(str(len(calls)))

    a = cache.cached(tmp_path, "thing", {"x": 1}, build)
    cache.cached(tmp_path, "thing", {"x": 1}, build)
    assert len(calls) == 1 and (a / "out.txt").read_text() == "1"
    cache.cached(tmp_path, "thing", {"x": 2}, build)
    assert len(calls) == 2 and (a / "out.txt").read_text() == "2"

    def broken(tmp):
        (tmp / "out.txt").write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.cached(tmp_path, "thing", {"x": 3}, broken)
    assert (a / "out.txt").read_text() == "2"  # the previous artifact survives intact
    assert cache.stored_key(a) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["thing"]  # no temporary left behind


def test_source_hash_tracks_the_named_parts():
    assert cache.source_hash(("retrieval",)) != cache.source_hash(("dp",))
    assert cache.source_hash(("retrieval",)) == cache.source_hash(("retrieval",))


def _metric_rows():
    rows = []
    for rung, model, scale in ((1, "weak", 1.0), (2, "strong", 3.0)):
        for N, pool in ((10, "10"), (100, "100"), (400, "full")):
            chance = 1 / N
            value = min(1.0, chance * scale * (1 + np.log10(N)))
            rows.append({"rung": rung, "model": model, "cohort": "int", "role": "internal", "direction": "image_to_report",
                         "negatives": "random", "level": "study", "N": N, "pool": pool, "K": 1, "estimator": "exact",
                         "metric": "recall", "value": value, "ci_low": value * 0.8, "ci_high": value * 1.2,
                         "chance": chance, "lift": value / chance, "n_queries": 400, "coverage": 1.0})
    return pd.DataFrame(rows)


def test_summaries_pick_rows_and_refuse_ambiguity():
    t = _metric_rows()
    assert S.strongest_model(t) == "strong"
    assert S.ladder_order(t) == ["weak", "strong"]
    assert S.largest_finite_pool(t) == 100
    assert S.one(t, model="strong", N=100)["lift"] == pytest.approx(9.0)
    assert S.one(t, model="weak", pool="full")["N"] == 400
    with pytest.raises(LookupError):
        S.one(t, N=100)  # two models match
    assert S.is_monotone([0.1, 0.2, 0.3]) and not S.is_monotone([0.1, 0.3, 0.2])


def test_claim_verdicts():
    ratio = next(c for c in claims.CLAIMS if c.key == "lift_n100")
    assert claims.verdict(ratio, 12.0, True) == "magnitude"
    assert claims.verdict(ratio, 2.0, True) == "direction"
    assert claims.verdict(ratio, 0.9, False) == "not"
    change = next(c for c in claims.CLAIMS if c.key == "probe_change")
    assert claims.verdict(change, -0.5) == "magnitude"
    assert claims.verdict(change, -2.5) == "direction"
    assert claims.verdict(change, 3.0) == "not"
    drop = next(c for c in claims.CLAIMS if c.key == "dp_drop_internal")
    assert claims.verdict(drop, -40.0, True) == "magnitude"
    assert claims.verdict(drop, -10.0, True) == "direction"
    assert claims.verdict(drop, 5.0, False) == "not"
    count = next(c for c in claims.CLAIMS if c.key == "pairs_total")
    assert claims.verdict(count, 30000) == "not"


def test_privacy_scan_finds_report_runs_and_identifiers_but_not_aggregates():
    report = "FINDINGS: Moderate right pleural effusion layering to the mid thorax with adjacent atelectasis."
    texts = {
        "clean.ipynb": "recall 0.123 at N = 100; 14 labels; macro AUROC 0.79",
        "leak.ipynb": "example: moderate right pleural effusion layering to the mid thorax with adjacent atelectasis",
        "ids.csv": "pair_id\n5a1b2c3d-0001\n",
    }
    found = scan_texts(texts, [report], {"pair_id": ["5a1b2c3d-0001", "12"], "patient_id": ["10000032"]})
    assert {(f.file, f.kind) for f in found} == {("leak.ipynb", "report text"), ("ids.csv", "identifier")}
    assert all(report not in str(f) for f in found)  # findings never repeat the text


def test_staleness_names_missing_and_changed_chapters(tmp_path, monkeypatch):
    from relink.paper import runner

    chapter = chapters()[0]
    monkeypatch.setattr(type(chapter), "output", property(lambda self: tmp_path / f"{self.stem}.ipynb"))
    assert runner.staleness(chapter) == "not executed"
    nb = {"cells": [], "metadata": {"relink": {"inputs": {"notebook": runner.notebook_source_hash(chapter),
                                                          "relink_source": cache.source_hash(("*",))}}},
          "nbformat": 4, "nbformat_minor": 5}
    chapter.output.write_text(json.dumps(nb))
    assert runner.staleness(chapter) is None
    nb["metadata"]["relink"]["inputs"]["notebook"] = "0" * 16
    chapter.output.write_text(json.dumps(nb))
    assert "notebook source changed" in runner.staleness(chapter)


def test_notebook_pairs_are_in_sync_and_hold_no_logic():
    import jupytext

    from relink.paper.chapters import NOTEBOOK_DIR

    for chapter in chapters():
        py = jupytext.read(chapter.source)
        ipynb = jupytext.read(chapter.source.with_suffix(".ipynb"))
        assert [c.source for c in py.cells] == [c.source for c in ipynb.cells], f"run `jupytext --sync {chapter.source.name}`"
        tags = [c.metadata.get("tags", []) for c in py.cells]
        assert any("parameters" in t for t in tags), f"{chapter.stem} has no parameters cell"
        code = "\n".join(c.source for c in py.cells if c.cell_type == "code")
        assert not any(line.lstrip().startswith(("def ", "class ")) for line in code.splitlines()), chapter.stem
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.py")) == [c.stem for c in chapters()]


@pytest.mark.parametrize("profile", ["smoke", "synthetic"])
def test_result_keys_never_run_a_stage(tmp_path, monkeypatch, profile):
    """Every result's cache key comes from declared inputs: on an empty artifacts folder, computing them all
    synthesises, trains, embeds and audits nothing, and writes nothing."""
    import relink.models.ladder_train as ladder_train
    import relink.synth as synth
    from relink import embed
    from relink.paper.results import registry, result_keys
    from relink.paper.stages import Context, key_id

    def refuse(*args, **kwargs):
        raise AssertionError("a cache key ran a stage")

    for module, name in ((synth, "generate_cohort"), (ladder_train, "train_ladder"), (embed, "embed_many")):
        monkeypatch.setattr(module, name, refuse)
    ctx = Context(get_profile(profile), tmp_path / "artifacts", progress=False)
    keys = result_keys(ctx, list(registry()))
    assert set(keys) == set(registry())
    assert not (tmp_path / "artifacts").exists()
    # the same inputs give the same ids; a changed profile field a result names changes its id
    assert {n: key_id(k) for n, k in keys.items()} == {n: key_id(k) for n, k in result_keys(ctx, list(keys)).items()}
    other = Context(get_profile(profile, {"synth_seed": "99"}), tmp_path / "artifacts", progress=False)
    assert all(key_id(k) != key_id(keys[n]) for n, k in result_keys(other, list(keys)).items())


def test_isolated_steps_build_what_is_missing_and_spawn_nothing_when_all_is_cached(tmp_path, monkeypatch):
    """`relink paper` builds each missing stage and result in its own process (its peak is then the largest
    step's, not their sum); with every needed result cached it spawns nothing."""
    import json

    from relink.io import canonical
    from relink.paper import isolated
    from relink.paper.cache import KEY_FILE
    from relink.paper.results import result_keys, with_upstream
    from relink.paper.stages import Context

    profile, root = get_profile("smoke"), tmp_path / "artifacts"
    todo = isolated.steps(profile, ["custodian"], root)
    assert todo[:len(isolated.STAGES)] == list(isolated.STAGES)
    assert todo[len(isolated.STAGES):] == [isolated.RESULT + n for n in with_upstream(["custodian"])]  # upstream first
    # the result `cohorts` is built as a result, not as the stage of the same name
    assert "build_results" in isolated.step_code(isolated.json_record(profile), root, isolated.RESULT + "cohorts")
    assert "build_results" not in isolated.step_code(isolated.json_record(profile), root, "cohorts")
    for step in todo:  # each child's code is valid Python naming the artifacts folder and the profile
        code = isolated.step_code(isolated.json_record(profile), root, step)
        compile(code, step, "exec")
        assert str(root) in code and '"smoke"' in code
    from pathlib import Path

    from relink.paper import stages as S

    seen = []
    for name in ("cohorts", "ladder", "role_embeddings"):  # run each stage step's code with the stage recorded
        monkeypatch.setattr(S, name, lambda ctx, *a, _n=name: seen.append((_n, ctx.root, ctx.profile.name, a)))
    for step in isolated.STAGES:
        exec(isolated.step_code(isolated.json_record(profile), root, step), {})
    assert [(n, r, p, a) for n, r, p, a in seen] == [
        ("cohorts", root, "smoke", ()), ("ladder", root, "smoke", ()),
        ("role_embeddings", root, "smoke", ("internal",)), ("role_embeddings", root, "smoke", ("external",))]
    assert all(isinstance(r, Path) for _, r, _, _ in seen)
    keys = result_keys(Context(profile, root, progress=False), ["custodian"])
    for name in keys:  # one result missing: only it is built (after the stages, which are cheap when cached)
        if name != "custodian":
            (root / "results" / name).mkdir(parents=True)
            (root / "results" / name / KEY_FILE).write_text(json.dumps(canonical(keys[name])))
    assert isolated.steps(profile, ["custodian"], root) == [*isolated.STAGES, "result custodian"]
    (root / "results" / "custodian").mkdir(parents=True)
    (root / "results" / "custodian" / KEY_FILE).write_text(json.dumps(canonical(keys["custodian"])))
    assert isolated.steps(profile, ["custodian"], root) == []
    assert isolated.build_isolated(profile, ["custodian"], root) == 0


def test_the_cohort_size_rows_say_what_they_test():
    """Equal to the study's sizes: by construction; one pair off, or smaller: by design; read from real
    cohorts: they count what the run read."""
    study = {c.key: c.study for c in claims.CLAIMS if c.key in claims.SIZE_CLAIMS}

    def table(values, name="study"):
        return pd.DataFrame({"key": list(values), "profile": name, "study_value": [study[k] for k in values],
                             "reproduced_value": [float(v) for v in values.values()]})

    assert len(study) == 4
    assert "match the study by construction" in claims.sizes_sentence(table(study), credentialed=False)
    off_by_one = {**study, "internal_eval": study["internal_eval"] - 1}
    assert "differ from the study by design" in claims.sizes_sentence(table(off_by_one), credentialed=False)
    smaller = {k: v / 9 for k, v in study.items()}
    assert "by design" in claims.sizes_sentence(table(smaller, "synthetic"), credentialed=False)
    assert "count the cohorts this run read" in claims.sizes_sentence(table(smaller, "mimic"), credentialed=True)
