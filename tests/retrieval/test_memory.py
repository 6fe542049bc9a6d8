"""The memory budget: what it covers (the audit's data above the process once its libraries are imported) is
what a run under a tight budget keeps within, the summary after the pass included."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from relink.embeddings import EmbeddingSet
from relink.retrieval import summary
from relink.retrieval.audit import audit_queries
from relink.retrieval.memory import baseline, resident
from relink.retrieval.scale import Scale
from relink.retrieval.spec import AuditSpec

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "audit.py"


def test_a_tight_budget_holds_through_the_pass_and_the_summary(tmp_path):
    """8,000 random pairs with the threshold attacker's counts under --memory 40MB, in a fresh process: the
    resident set sampled every few milliseconds never rises more than the budget above the baseline, in the
    pass or in the summary."""
    out = tmp_path / "memory.json"
    subprocess.run([sys.executable, str(BENCH), "--memory-run", "8000", "--d", "32", "--memory", "40MB",
                    "--json", str(out)], check=True, capture_output=True, timeout=600)
    figures = json.loads(out.read_text())
    peaks = figures["peak_above_baseline_mib"]
    assert figures["within_budget"] and figures["budget_mib"] == 40
    assert 0 < peaks["pass"] <= 40 and 0 < peaks["summary"] <= 40
    assert figures["table_rows"] > 0 and figures["grid"]["counted"] >= 2
    assert "/" not in json.dumps(figures)  # figures only: no path


def test_the_summary_works_in_a_sixteenth_of_a_small_budget():
    rng = np.random.default_rng(0)
    image, text = (rng.normal(size=(300, 8)).astype(np.float32) for _ in range(2))
    rows = pd.DataFrame({"pair_id": np.arange(300).astype(str), "patient_id": (np.arange(300) // 2).astype(str)})
    es = EmbeddingSet.from_arrays(rows, image, text)
    spec = AuditSpec(pools=(10, "full"), confident=(0.9,))
    small = audit_queries(es, spec, scale=Scale(memory=32 << 20))
    sums, cache, chunk = summary.working_bytes(small)
    assert sums == cache == 2 << 20 and 256 <= chunk < (2 << 20) // 8
    roomy = audit_queries(es, spec, scale=Scale(memory=8 << 30))
    assert summary.working_bytes(roomy)[:2] == (summary._SUMS_BYTES, summary._CACHE_BYTES)


def test_the_baseline_is_taken_with_the_libraries_loaded():
    """The baseline imports and uses the audit's libraries once: taking it again adds (almost) nothing."""
    first = baseline()
    assert first is not None and abs(baseline() - first) < (8 << 20) and resident() >= first - (8 << 20)
