"""The one-run privacy audit: its bound is valid on a mechanism whose epsilon is known exactly, it lies below the
claim for DP runs of the real trainer, and it is clearly positive for the run without DP."""

import json
import math

import numpy as np
import pytest

from helpers.sets import tiny_model_set, toy_heads, toy_set
from relink.cli import main
from relink.dp.audit import audit_run, epsilon_bound, one_run_bound, p_value
from relink.dp.spec import MitigationSpec
from relink.dp.start import random_heads

pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")


def test_p_value_is_the_binomial_tail_at_e_eps_over_one_plus_e_eps():
    from scipy.stats import binom

    q = math.exp(1.0) / (1 + math.exp(1.0))
    assert p_value(100, 40, 33, 1.0, 0.0) == pytest.approx(float(binom.sf(32, 40, q)))
    assert p_value(100, 40, 33, 1.0, 1e-5) >= p_value(100, 40, 33, 1.0, 0.0)  # delta only adds
    # the bound is where the tail crosses 5%: just below it the claim is rejected, just above it is not
    eps = epsilon_bound(100, 40, 33, 0.0)
    assert p_value(100, 40, 33, eps - 1e-3, 0.0) < 0.05 < p_value(100, 40, 33, eps + 1e-3, 0.0)
    assert epsilon_bound(100, 40, 20, 0.0) == 0.0  # chance-level guessing rejects nothing


def test_the_bound_covers_a_mechanism_of_known_epsilon():
    """Randomised response on membership is exactly eps-DP: its audited bound exceeds eps in at most ~5% of runs
    (the null), and it finds most of eps when there is a lot of it (power)."""
    rng = np.random.default_rng(0)
    eps, m, runs = 1.0, 1000, 200
    keep = math.exp(eps) / (1 + math.exp(eps))
    over = 0
    for _ in range(runs):
        included = rng.random(m) < 0.5
        told = np.where(rng.random(m) < keep, included, ~included)  # what the mechanism reveals
        scores = told + rng.random(m) * 0.1  # the auditor ranks by it (ties broken at random)
        over += one_run_bound(scores, included, 0.0)["epsilon_lower_bound"] > eps
    assert over / runs <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / runs)
    included = rng.random(m) < 0.5
    told = np.where(rng.random(m) < math.exp(4) / (1 + math.exp(4)), included, ~included)
    assert one_run_bound(told + rng.random(m) * 0.1, included, 0.0)["epsilon_lower_bound"] > 2.0


def test_audit_lies_below_the_claim_for_dp_runs_and_is_clearly_positive_without_dp():
    es = toy_set(n_patients=200, per_patient=1, di=64, dt=64, seed=0)
    train, bank = es.split("train"), es.split("validate")
    start = random_heads(toy_heads(64, 64, 32), 0)
    common = dict(epochs=10, batch_size=64, lr=3e-2, reproducible_noise=0)
    plain = audit_run(train, bank, start, MitigationSpec(private=False, **common), 200, seed=0)
    assert plain["epsilon_lower_bound"] > 2.0 and plain["tpr_at_fpr_0.1"] > 0.9
    for eps in (1.0, 8.0):
        rec = audit_run(train, bank, start, MitigationSpec(epsilon=eps, delta=1e-4, **common), 200, seed=0)
        assert rec["epsilon_lower_bound"] <= rec["claimed_epsilon"] <= eps and rec["bound_below_claim"] is True
        assert rec["tpr_at_fpr_0.1"] <= rec["dp_limit_at_fpr_0.1"] + 0.15  # within sampling error of ~100 canaries
        assert rec["m"] == 200 and 70 < rec["canaries_included"] < 130


def test_cli_audit_privacy_writes_audit_json(tmp_path, capsys):
    _, es_dir = tiny_model_set(80)
    out = tmp_path / "audit"
    rc = main(["mitigate", "--embeddings", str(es_dir), "--non-private", "--epochs", "3", "--batch-size", "8",
               "--audit-privacy", "--canaries", "20", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert rc == 0 and "empirical lower bound" in stdout
    rec = json.loads((out / "audit.json").read_text())
    assert rec["m"] == 20 and rec["private"] is False and "not for release" in rec["note"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["audit.json"]
