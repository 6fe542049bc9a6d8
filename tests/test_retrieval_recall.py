"""Recall@K at one pool (the before/after figure): its value from the definition, its options from a spec."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from relink.embeddings import EmbeddingSet
from relink.errors import RelinkError
from relink.retrieval.recall import recall_at
from relink.retrieval.spec import AuditSpec
from test_retrieval_brute import scores, unit


def _set(n=120, seed=0):
    rng = np.random.default_rng(seed)
    image = unit(rng, n, 8)
    text = image + 1.5 * unit(rng, n, 8)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    rows = pd.DataFrame({"pair_id": np.arange(n), "patient_id": np.arange(n) // 3})
    return EmbeddingSet.from_arrays(rows, image, text, meta={"model": "m"}), image, text


@pytest.mark.parametrize("direction", ["image_to_report", "report_to_image"])
def test_recall_at_is_the_expected_recall_over_random_pools(direction):
    es, image, text = _set()
    S = scores(image, text)
    M = S if direction == "image_to_report" else S.T
    above = (M > np.diag(M)[:, None] + 1e-6).sum(1)  # the pair's own cell never exceeds itself
    n = len(above)
    for N, K in ((10, 1), (30, 5)):
        row = recall_at(es, N, K, direction, spec=AuditSpec(n_boot=200, random_state=2))
        assert row.N == N and row.K == K and row.direction == direction and row.level == "study"
        assert row.value == pytest.approx(hypergeom.cdf(K - 1, n - 1, above, N - 1).mean(), rel=1e-9)
        assert row.chance == pytest.approx(K / N) and row.ci_low <= row.value <= row.ci_high
    full = recall_at(es, 10_000, 1, direction, n_boot=0)  # more than the set holds: the whole set
    assert full.N == n and full.value == pytest.approx(np.mean(above == 0)) and np.isnan(full.ci_low)


def test_recall_at_takes_its_other_options_from_the_spec():
    es, _, _ = _set(seed=1)
    spec = AuditSpec(n_boot=100, random_state=5, ci=0.5, levels=("patient",), pools=(7,), ks=(2,))
    a = recall_at(es, 20, 1, spec=spec)
    b = recall_at(es, 20, 1, spec=spec.but(ci=0.95))
    assert a.N == 20 and a.K == 1 and a.level == "study"  # the wrapper's own pool, K and level win
    assert a.value == b.value and (a.ci_high - a.ci_low) < (b.ci_high - b.ci_low)
    with pytest.raises(RelinkError, match="--bootstrap"):
        recall_at(es, 20, 1, n_boot=-1)
    with pytest.raises(RelinkError, match="at least 2 candidates"):
        recall_at(es.subset([0]), 20, 1)
