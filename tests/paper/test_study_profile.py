"""The ``study`` profile: the study's sizes exactly, its caps stated, and its code path run at 1/100 of its size."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from relink.paper.claims import CLAIMS
from relink.paper.profiles import SIZE_FIELDS, Profile, get_profile, scaled
from relink.synth.anatomy import STUDY_COUNT_P, sample_patient
from relink.synth.generate import SITES, assign_splits

STUDY = {c.key: int(c.study) for c in CLAIMS if c.kind == "count"}


def studies_per_patient(profile: Profile, site: str) -> np.ndarray:
    """Each patient's number of studies (= pairs) as the generator draws them, without rendering an image."""
    patients = profile.internal_patients if site == "internal" else profile.external_patients
    seed = profile.synth_seed + (0 if site == "internal" else 1)
    children = np.random.SeedSequence([seed, SITES[site][2]]).spawn(patients)
    table = profile.study_counts or STUDY_COUNT_P
    return np.array([sample_patient(np.random.default_rng(c), i, "p", table).n_studies for i, c in enumerate(children)])


def expected_sizes(profile: Profile) -> dict[str, int]:
    internal, external = studies_per_patient(profile, "internal"), studies_per_patient(profile, "external")
    split = assign_splits(profile.internal_patients, profile.synth_seed, "internal", profile.splits)
    return {"pairs_total": int(internal.sum() + external.sum()),
            "patients_total": profile.internal_patients + profile.external_patients,
            "internal_eval": int(internal[split == profile.eval_split].sum()), "external_eval": int(external.sum()),
            **{f"internal_{s}": int(internal[split == s].sum()) for s in ("train", "validate")}}


def test_a_table_of_studies_changes_only_how_many_studies_a_patient_has():
    from relink.synth.anatomy import sample_study
    from relink.synth.report import write_report

    table = get_profile("study").study_counts
    for seq in np.random.SeedSequence([7, 1]).spawn(30):
        a = sample_patient(np.random.default_rng(seq), 0, "p")
        b = sample_patient(rng := np.random.default_rng(seq), 0, "p", table)
        assert dataclasses.replace(a, n_studies=0) == dataclasses.replace(b, n_studies=0)
        ra = np.random.default_rng(seq)
        sample_patient(ra, 0, "p")
        for k in range(min(a.n_studies, b.n_studies)):  # the studies both draw are the same studies
            sa, sb = sample_study(ra, a, k, None, "internal"), sample_study(rng, b, k, None, "internal")
            assert write_report(a, sa, "internal", ra).text == write_report(b, sb, "internal", rng).text


def test_caps_are_stated_from_the_fields():
    study, default = get_profile("study"), get_profile("synthetic")
    assert default.caps() == ()
    caps = study.caps()
    assert len(caps) == 3 and f"{study.train_max_pairs:,}" in caps[0] and f"{study.fit_max_pairs:,}" in caps[1]
    assert "0.34, no DP" in caps[2]
    lifted = get_profile("study", {"fit_max_pairs": "0", "epsilons": "0.1,0.34,1,3,8,none"})
    assert lifted.caps() == caps[:1]
    assert Profile.from_record(study.record()) == study


def test_scaled_divides_the_sizes_and_nothing_else():
    study = get_profile("study")
    small = scaled(study, 50)
    for f in dataclasses.fields(Profile):
        before, after = getattr(study, f.name), getattr(small, f.name)
        if f.name == "pools":
            assert after == (10, 100, "full")  # the pools the held-out split still fills at 1/50
            continue
        assert after == (max(1, before // 50) if f.name in SIZE_FIELDS else before), f.name
    assert scaled(get_profile("synthetic"), 50).fit_max_pairs == 0  # an unset cap stays unset
    assert Profile.from_record(small.record()) == small


@pytest.mark.slow
def test_the_study_profile_has_the_studys_sizes_exactly():
    got = expected_sizes(get_profile("study"))
    assert {k: got[k] for k in STUDY} == STUDY
    assert got["internal_train"] + got["internal_validate"] + got["internal_eval"] + got["external_eval"] == STUDY["pairs_total"]


@pytest.mark.slow
def test_the_study_profile_at_one_hundredth_builds_every_step(tmp_path, monkeypatch):
    """The steps `relink paper --profile study` runs (relink.paper.isolated), at 1/100 of the sizes (small
    enough for CI's two cores; 1/50 takes several minutes more): the
    cohorts have the sizes the generator's draws give, and each cap reaches the stage it caps. The stages and
    the DP result (which the caps change); the other results run the smoke profile's code path."""
    from relink.embeddings import load as load_embeddings
    from relink.paper import isolated
    from relink.paper.results import build_results
    from relink.paper.stages import Context, cohorts, ladder, role_embeddings

    monkeypatch.setenv("RELINK_ARTIFACTS", str(tmp_path))
    profile = scaled(get_profile("study"), 100)
    root = tmp_path / "study"
    needed = ["dp"]
    assert isolated.build_isolated(profile, needed, root) == 0
    assert isolated.steps(profile, needed, root) == []  # everything is cached: a second run spawns nothing

    ctx = Context(profile, root, progress=False)
    frames = {role: pd.read_parquet(path / "cohort.parquet" if path.is_dir() else path)
              for role, path in cohorts(ctx).items()}
    want = expected_sizes(profile)
    assert len(frames["internal"]) + len(frames["external"]) == want["pairs_total"]
    assert (frames["internal"]["split"] == "test").sum() == want["internal_eval"]
    assert len(frames["external"]) == want["external_eval"]
    assert frames["internal"]["patient_id"].nunique() + frames["external"]["patient_id"].nunique() == want["patients_total"]

    rungs = ladder(ctx)
    info = json.loads((root / "ladder" / "ladder.json").read_text())
    assert info["signature"]["pairs"] == profile.train_max_pairs < want["internal_train"]
    sets = role_embeddings(ctx, "internal")
    strongest = load_embeddings(sets[len(rungs)])
    counts = strongest.rows["split"].value_counts()
    assert counts["train"] == profile.fit_max_pairs < want["internal_train"]
    assert counts["test"] == want["internal_eval"] and counts["validate"] == want["internal_validate"]
    for index in range(1, len(rungs)):
        assert set(load_embeddings(sets[index]).rows["split"]) == {"test"}

    results = build_results(profile, needed, str(tmp_path / "study"))
    sweep = pd.read_parquet(results["dp"] / "sweep.parquet")
    assert list(sweep["setting"]) == ["ε = 0.34", "no DP"]
    assert int(sweep["n_units"].iloc[0]) == profile.fit_max_pairs


def _record(**changes):
    step = {"rc": 0, "wall_s": 600.0, "peak_process_mib": 1500, "peak_tree_mib": 1500}
    record = {"profile": "study", "cpus": 2, "measured": "2026-12-07", "divided_by": 1, "settings": {}, "complete": True,
              "stages": {"cohorts": step, "result audit": {**step, "wall_s": 300.0},
                         "result hard_negatives": {**step, "wall_s": 300.0}, "result dp": {**step, "wall_s": 1200.0}},
              "chapters": {"01_x": {**step, "wall_s": 60.0, "peak_process_mib": 900}}, "book": {**step, "wall_s": 60.0}}
    return {**record, **changes}


def test_the_costs_appendix_counts_only_a_complete_full_size_run_of_the_study_profile():
    from relink.paper import costs

    assert costs.study_run(_record()) is not None
    for bad in (_record(complete=False), _record(divided_by=50), _record(settings={"n_boot": "10"}),
                _record(profile="synthetic"), None):
        assert costs.study_run(bad) is None
    study = get_profile("study")
    absent = costs.study_sentence(None, study)
    assert "not been measured" in absent and not any(ch.isdigit() for ch in absent.split("It does less")[0])
    default = _record(profile="synthetic")
    table = costs.side_by_side(default, None)
    assert (table["study: wall"] == "not measured").all() and len(table) == 6  # 4 steps, the chapters, the book


def test_the_study_verdict_and_projection_follow_the_record():
    from relink.paper import costs
    from relink.paper.profiles import PROFILES

    v = costs.study_verdict(_record())
    assert v["total_s"] == 600 + 300 + 300 + 1200 + 60 + 60 and v["within_time"] and v["within_memory"]
    assert not costs.study_verdict(_record(book={"rc": 0, "wall_s": 3000.0, "peak_process_mib": 5000}))["within_memory"]
    study, mimic = get_profile("study"), PROFILES["mimic"]
    frame = costs.study_projection(_record(), study, mimic)
    work = costs.workload(mimic)
    # audit: 600 s for the study's 3 models -> 4 models; DP: per run, epoch and private pair
    assert frame["CPU here (projection)"].iloc[0] == costs.hours(600 * work["rungs"] / study.train_rungs)
    per = 1200 / (2 * study.dp_epochs * study.fit_max_pairs)
    assert frame["CPU here (projection)"].iloc[1] == costs.hours(per * work["dp_pair_epochs"])
