"""The credentialed path end to end: ``relink paper --profile mimic`` and ``--profile chexpert-plus``
on official-layout fixtures and a ladder of local checkpoints (tests/helpers/credentialed.py).

Each profile runs once (module fixture ``books``) on a copy of book/ and
notebooks/, with ``--strict`` (``jupyter-book build -W -n --keep-going
--all``). Then: every chapter executed and passed the leak scan, the claims
chapter computed its verdicts from the fixture's own numbers and names the
split they come from, the canaries planted in the fixture appear nowhere in
the book, the result tables or the run's output, and no page shows ``nan``,
``None`` or an unresolved glue role. A last test plants a leak in a chapter
and in a result table and checks that the run refuses both.

One fast test (not ``slow``) checks pool labels on a cohort whose size equals
a listed pool size, which the MIMIC-CXR fixture also exercises end to end.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.credentialed import CANARY_IDS, CANARY_PHRASE, PLUS_HELDOUT, credentialed_data  # noqa: F401
from relink.provenance import REPO_ROOT

RELINK = [sys.executable, "-m", "relink"]
PROFILES = ("mimic", "chexpert-plus")
CHAPTERS = ("01_cohorts", "02_relinkage", "03_hard_negatives", "04_mitigation", "05_utility", "06_claims", "07_custodian_report", "08_costs",
            "09_stronger_attacker")
RAW = re.compile(r"\bnan\b|\bNaN\b|\bNone\b|\binf\b|\{glue")
slow = pytest.mark.slow


def start_paper(data, profile: str, work: Path, *extra: str) -> dict:
    """Start ``relink paper --profile PROFILE`` on a copy of the book in ``work`` (output to files)."""
    if not (work / "book").exists():
        shutil.copytree(REPO_ROOT / "book", work / "book", ignore=shutil.ignore_patterns("_build", "chapters"))
        shutil.copytree(REPO_ROOT / "notebooks", work / "notebooks")
    env = {**data.env, "RELINK_BOOK_DIR": str(work / "book"), "RELINK_NOTEBOOK_DIR": str(work / "notebooks"),
           "RELINK_ARTIFACTS": str(work / "artifacts")}
    logs = {name: open(work / f"{name}.log", "w+") for name in ("stdout", "stderr")}
    proc = subprocess.Popen(RELINK + ["paper", "--profile", profile, *data.overrides(profile), *extra],
                            env=env, stdout=logs["stdout"], stderr=logs["stderr"], text=True)
    return {"work": work, "env": env, "proc": proc, "logs": logs, "t0": time.perf_counter(),
            "artifacts": work / "artifacts" / profile}


def finish_paper(run: dict) -> dict:
    run["code"] = run.pop("proc").wait()
    run["seconds"] = round(run.pop("t1", time.perf_counter()) - run.pop("t0"), 1)
    for name, f in run.pop("logs").items():
        f.seek(0)
        run[name] = f.read()
        f.close()
    return run


def paper_run(data, profile: str, work: Path, *extra: str) -> dict:
    return finish_paper(start_paper(data, profile, work, *extra))


@pytest.fixture(scope="module")
def books(credentialed_data, tmp_path_factory):  # noqa: F811
    # Both profiles at once: much of a run is one process at a time (kernels, the book build), so
    # two runs share 2 cores well. Each wall time below is measured with the other one running.
    started = {p: start_paper(credentialed_data, p, tmp_path_factory.mktemp(p), "--strict") for p in PROFILES}
    while any("t1" not in r for r in started.values()):  # note when each one ends
        for r in started.values():
            if "t1" not in r and r["proc"].poll() is not None:
                r["t1"] = time.perf_counter()
        time.sleep(0.5)
    runs = {p: finish_paper(r) for p, r in started.items()}
    timing = {"fixture": credentialed_data.seconds, **{p: r["seconds"] for p, r in runs.items()}}
    print(f"\ncredentialed fixture and paper wall times (s, the two profiles concurrently): {json.dumps(timing)}")
    return runs


def _ok(run: dict) -> None:
    assert run["code"] == 0, run["stdout"][-4000:] + run["stderr"][-4000:]


def _page_text(path: Path) -> str:
    s = re.sub(r"<script.*?</script>|<style.*?</style>", "", path.read_text(), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", s))


def _held_out(run: dict, profile: str) -> int:
    """Held-out pairs of the cohort the run audited, counted from its manifest."""
    frame = pd.read_parquet(run["artifacts"] / "cohort-internal" / "cohort.parquet", columns=["split"])
    return int((frame["split"] == "test").sum())


# ----------------------------------------------------------------------------- fast


def test_pool_labels_when_the_cohort_is_exactly_a_pool_size():
    """A held-out set of exactly 100 pairs audited at N = 10, 100 and full, as the paper's results
    audit it (``pools_for``, ``label_table``): the lookups the chapters make (N = 100, the full pool,
    the headline pool) each find one row, and the full pool is labelled ``full``."""
    from relink.embeddings import EmbeddingSet
    from relink.paper import summaries as S
    from relink.paper.results.common import label_table, pools_for
    from relink.paper.stages import RungSpec
    from relink.retrieval.audit import audit
    from relink.retrieval.spec import AuditSpec

    rng = np.random.default_rng(0)
    n, d = 100, 16
    x = rng.normal(size=(n, d)).astype(np.float32)
    rows = pd.DataFrame({"pair_id": [f"pair{i:05d}" for i in range(n)], "patient_id": [f"pat{i:05d}" for i in range(n)]})
    es = EmbeddingSet.from_arrays(rows, x, x + 3 * rng.normal(size=(n, d)).astype(np.float32))
    pools = (10, 100, "full")
    table = audit(es, AuditSpec(pools=pools_for(pools, n), ks=(1,), n_boot=0), model="m", cohort="c")
    table = label_table(table, RungSpec("m", 1, "m"), "internal", pools, n)
    recall = S.pick(table, K=1)
    assert sorted(recall["pool"]) == ["10", "full"] and int(S.one(table, pool="full", K=1)["N"]) == n
    full = S.one(table, pool="full", K=1)
    assert 0 < full["value"] < 1
    assert S.one(table, N=100, K=1)["value"] == full["value"]  # N = 100 is the full pool here
    assert S.largest_finite_pool(table) == 10 and S.full_pool_size(table) == n
    # the table keeps every metric of the full pool once
    assert set(S.pick(table, metric=None, K=None)["metric"]) == {"recall", "mrr", "median_rank"}
    assert not table.duplicated(["direction", "level", "metric", "pool", "K"]).any()


def test_a_profile_without_external_cohort_says_so_instead_of_nan():
    from relink.paper import claims, sentences

    summary = pd.DataFrame([{"cohort": "c", "role": "internal", "split": "test", "pairs": 120, "studies": 120,
                             "patients": 50}])
    said = [sentences.external_cohort(summary), sentences.external_relinkage(pd.DataFrame(), "m", None),
            sentences.dp_external(pd.DataFrame(), 0.34, None)]
    assert all("no external cohort" in t and "not applicable" in t for t in said)
    assert not any(RAW.search(t) for t in said)
    table = pd.DataFrame({"verdict": ["magnitude", "not", "not applicable", "direction"], "profile": "p"})
    sentence = claims.summary_sentence(table)
    assert "1 is reproduced in magnitude, 1 in direction only and 1 not at all on the p profile" in sentence
    assert sentence.endswith("1 is not applicable to it (it has no external cohort).")


def test_cost_table_scales_the_measured_rates_by_the_study_sizes():
    from relink.paper import costs
    from relink.paper.profiles import PROFILES

    measured = {"machine": {"cpus": 2}, "embedding": {"pairs_per_s": 10.0, "flops_per_pair": 4e10, "bytes_per_pair": 9216},
                "decoding": {"seconds_per_image": 0.1},
                "audit": {"per_pair2": dict.fromkeys(("audit", "hard_negatives", "dp_recall"), 1e-8),
                          "bootstrap_per_query": dict.fromkeys(("audit", "hard_negatives", "dp_recall"), 0.0)},
                "dp": {"per_pair_epoch": 1e-4, "setup_seconds": 0.0, "accountant": {"seconds": 0.0}}}
    mimic = PROFILES["mimic"]
    # the abstract's numbers: 43,793 held-out MIMIC-CXR pairs, 29,296 CheXpert Plus, 406,241 in all; four models
    heldout, external, total = 43793, 29296, 406241
    train = total - external - heldout - heldout // 10
    embedded = 3 * (heldout + external) + total
    table = costs.cost_table(measured, mimic).set_index("stage")
    row = table.loc["Embedding (image + report, trunks kept)"]
    assert row["work"] == f"{embedded:,} pairs, 4 models"
    assert row["CPU here"] == costs.hours(embedded / 10.0 + embedded * 0.1 / 2)
    assert row["one GPU (projection)"] == costs.hours(max(embedded * 4e10 / costs.GPU_FLOPS, embedded * 0.1 / costs.LOADER_CORES))
    dp = table.loc["DP sweep: training the heads"]
    assert dp["work"] == f"6 runs x 10 epochs x {train:,} pairs" and dp["CPU here"] == costs.hours(6 * 10 * train * 1e-4)
    audit = table.loc["Audit: random pools, both directions and levels"]
    assert audit["CPU here"] == costs.hours(4 * (heldout**2 + external**2) * 1e-8)
    assert costs.disk(measured, mimic)["pairs"] == embedded + 2 * (total - external)


# ----------------------------------------------------------------------------- slow, end to end


@slow
@pytest.mark.parametrize("profile", PROFILES)
def test_every_chapter_executes_is_scanned_and_the_book_builds(books, profile):
    run = books[profile]
    _ok(run)
    assert len(re.findall(r"^  \d\d_\w+: executed in", run["stdout"], flags=re.M)) == len(CHAPTERS), run["stdout"]
    html = run["work"] / "book" / "_build" / "html"
    for stem in CHAPTERS:
        assert (html / "chapters" / f"{stem}.html").is_file(), stem
        meta = json.loads((run["work"] / "book" / "chapters" / f"{stem}.ipynb").read_text())["metadata"]["relink"]
        assert meta["inputs"]["profile"]["name"] == profile
        assert meta["provenance"]["privacy_scan"] == "passed", stem
    intro = _page_text(html / "intro.html")
    assert f"on the {profile} profile" in intro


@slow
@pytest.mark.parametrize("profile", PROFILES)
def test_claims_come_from_the_fixture_and_name_their_split(books, profile):
    run = books[profile]
    _ok(run)
    text = _page_text(run["work"] / "book" / "_build" / "html" / "chapters" / "06_claims.html")
    held = _held_out(run, profile)
    row = re.search(r"Held-out internal pairs \(MIMIC-CXR\) (\S+) (\S+)", text)
    assert row and row.group(2) == f"{held:,}", row and row.groups()  # the study's 43,793 beside the fixture's count
    # the verdict cells of the table and the sentence that counts them agree
    counts = re.search(r"Of the study.s (\d+) quantitative claims, (\d+) (?:is|are) reproduced in magnitude, (\d+) in "
                       r"direction only and (\d+) not at all", text)
    assert counts, text[-3000:]
    table = text.split("Verdict", 1)[1].split("Of the study", 1)[0]
    n_claims, magnitude, direction, missed = map(int, counts.groups())
    assert (table.count("magnitude"), table.count("direction")) == (magnitude, direction)
    # the claims the profile cannot test are counted apart (the rows beyond the study are not claims)
    na = re.search(r"(\d+) (?:is|are) not applicable to it", text)
    assert magnitude + direction + missed + (int(na.group(1)) if na else 0) == n_claims
    if profile == "mimic":  # official split; CheXpert Plus is the external cohort
        assert f"from the official mimic-cxr split: its test split of {held:,} pairs" in text
        assert "not applicable" not in text
    else:  # re-split to a held-out set of the requested size; no external cohort
        assert held >= PLUS_HELDOUT
        assert f"re-split of chexpert-plus sized to the study (split = study, seed 0): a held-out set of at least {PLUS_HELDOUT:,} pairs ({held:,} drawn" in text
        assert text.count("not applicable") >= 2  # the two claims about an external cohort


def _texts(path: Path):
    """(name, text) of every file under ``path``: tables as CSV, everything else as its bytes decoded."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if f.suffix == ".parquet":
            yield f, pd.read_parquet(f).to_csv(index=False)
        else:
            yield f, f.read_bytes().decode("utf-8", errors="replace")


@slow
@pytest.mark.parametrize("profile", PROFILES)
def test_canaries_appear_nowhere_in_book_tables_or_logs(books, profile):
    from relink.paper.leakscan import result_files

    run = books[profile]
    _ok(run)
    # an id as a token: not inside a longer number (a table's 0.19999999 is not the patient 19999999)
    canaries = [re.compile(re.escape(CANARY_PHRASE), re.I),
                *(re.compile(rf"(?<![0-9.]){re.escape(i)}(?![0-9])") for i in CANARY_IDS.values())]
    # positive control: the cohort the run read holds them, and this reader sees them there
    seen = "".join(t for _, t in _texts(run["artifacts"] / "cohort-internal" / "cohort.parquet"))
    assert canaries[0].search(seen) and re.search(rf"(?<![0-9.]){CANARY_IDS[profile]}(?![0-9])", seen)
    results = {p.name: p for p in (run["artifacts"] / "results").iterdir() if p.is_dir()}
    published = [*_texts(run["work"] / "book"), *((f, t) for p in result_files(results) for f, t in _texts(p)),
                 (Path("stdout"), run["stdout"]), (Path("stderr"), run["stderr"])]
    assert len(published) > 50
    leaks = [(str(f), c.pattern) for f, t in published for c in canaries if c.search(t)]
    assert not leaks, leaks[:5]


@slow
@pytest.mark.parametrize("profile", PROFILES)
def test_published_chapters_hold_no_local_path(books, credentialed_data, profile):  # noqa: F811
    """Executed chapters are published (the book, Binder): no path of this machine in them, neither
    the data's nor the local checkpoints' (RELINK_LADDER) nor a temporary file's."""
    run = books[profile]
    _ok(run)
    local = re.compile("|".join(re.escape(str(p)) for p in (credentialed_data.root, run["work"], Path(tempfile.gettempdir()))))
    pages = sorted((run["work"] / "book" / "chapters").glob("*.ipynb"))
    found = {p.name: sorted(set(local.findall(p.read_text())))[:3] for p in pages}
    assert not {k: v for k, v in found.items() if v}, found


@slow
@pytest.mark.parametrize("profile", PROFILES)
def test_prose_shows_no_nan_none_or_raw_glue(books, profile):
    run = books[profile]
    _ok(run)
    html = run["work"] / "book" / "_build" / "html"
    pages = [html / "intro.html", *(html / "chapters" / f"{s}.html" for s in CHAPTERS)]
    found = {p.name: sorted(set(RAW.findall(_page_text(p)))) for p in pages}
    assert not {k: v for k, v in found.items() if v}, found
    if profile == "chexpert-plus":
        for page in ("intro.html", "chapters/01_cohorts.html", "chapters/02_relinkage.html", "chapters/04_mitigation.html"):
            assert "This profile has no external cohort" in _page_text(html / page), page


@slow
def test_the_leak_scan_refuses_a_leaking_chapter_and_a_leaking_table(books, credentialed_data):  # noqa: F811
    profile = "chexpert-plus"
    run = books[profile]
    _ok(run)
    chapter = run["work"] / "book" / "chapters" / "06_claims.ipynb"
    before = chapter.read_bytes()
    source = run["work"] / "notebooks" / "06_claims.py"
    original = source.read_text()
    source.write_text(original + f"\n# %% [markdown]\n# {CANARY_PHRASE}.\n")
    try:
        again = paper_run(credentialed_data, profile, run["work"], "--chapters", "06", "--no-book")
    finally:
        source.write_text(original)
    assert again["code"] == 2, again["stdout"][-2000:] + again["stderr"][-2000:]
    assert "privacy scan: chapter 06_claims contains report text" in again["stderr"]
    assert CANARY_PHRASE not in again["stdout"] + again["stderr"]
    assert chapter.read_bytes() == before  # the leaking chapter was not written

    planted = run["artifacts"] / "results" / "cohorts" / "notes.json"
    planted.write_text(json.dumps({"note": f"{CANARY_IDS[profile]} {CANARY_PHRASE}"}))
    try:
        again = paper_run(credentialed_data, profile, run["work"], "--chapters", "01", "--no-book")
    finally:
        planted.unlink()
    assert again["code"] == 2, again["stdout"][-2000:] + again["stderr"][-2000:]
    assert re.search(r"privacy scan: \d+ result file\(s\) contain .*cohorts/notes\.json", again["stderr"]), again["stderr"][-2000:]
    assert CANARY_PHRASE not in again["stdout"] + again["stderr"]
