"""The summary's intervals column by column, whatever order and chunks it computes them in, and how often it
computes a group of columns."""

import numpy as np
import pandas as pd
import pytest

from relink.embeddings import EmbeddingSet
from relink.labels import CHEXPERT_LABELS
from relink.retrieval import summary as summary_module
from relink.retrieval.audit import audit_queries, summarise
from relink.retrieval.bootstrap import _cluster_codes
from relink.retrieval.intervals import cluster_sums, mean_interval
from relink.retrieval.spec import AuditSpec


def _labelled_set(n=900, d=16, seed=4):
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 3, size=n)
    vectors = rng.choice([0.0, 1.0], size=(3, len(CHEXPERT_LABELS)))
    image = rng.normal(size=(n, d)).astype(np.float32) + 2 * rng.normal(size=(3, d)).astype(np.float32)[group]
    text = image + 1.5 * rng.normal(size=(n, d)).astype(np.float32)
    rows = pd.DataFrame({"pair_id": np.arange(n).astype(str), "patient_id": (np.arange(n) // 3).astype(str)})
    for j, name in enumerate(CHEXPERT_LABELS):
        rows[name] = vectors[group, j]
    return EmbeddingSet.from_arrays(rows, image, text)


@pytest.fixture(scope="module")
def qv():
    spec = AuditSpec(pools=(10, 100, "full"), ks=(1, 5), negatives=("random", "pathology_matched"))
    return audit_queries(_labelled_set(), spec)


def test_every_interval_is_its_own_column_s(qv, monkeypatch):
    """Each row's value and interval equal those of its own column summed per patient (the matched rows' random
    twins on the queries the matched pool covers), with chunks of one column or of all of them (to the last
    bits of a sum over patients, which numpy adds in another order for one column than for several)."""
    values = qv.values  # the whole table, for the reference
    codes, g = _cluster_codes(qv.patient)
    for width_bytes in (1, 1 << 30):
        monkeypatch.setattr(summary_module, "_SUMS_BYTES", width_bytes)
        table = summarise(qv)
        for f, key in enumerate(qv.keys):
            row = table[(table.direction == key["direction"]) & (table.negatives == key["negatives"])
                        & (table.level == key["level"]) & (table.N == key["N"]) & (table.K == key["K"])
                        & (table.metric == key["metric"])]
            assert len(row) == 1
            lo, hi = mean_interval(*cluster_sums(values[:, f][:, None], codes, g), qv.spec.ci)
            assert row.value.iloc[0] == pytest.approx(np.nanmean(values[:, f]), rel=1e-12)
            assert (row.ci_low.iloc[0], row.ci_high.iloc[0]) == pytest.approx((lo[0], hi[0]), rel=1e-12)
            if key["negatives"] == "pathology_matched":
                twin = qv.column(direction=key["direction"], negatives="random", level=key["level"], N=key["N"],
                                 K=key["K"], metric="recall", estimator="exact")
                masked = np.where(np.isnan(values[:, f]), np.nan, values[:, twin])
                lo, hi = mean_interval(*cluster_sums(masked[:, None], codes, g), qv.spec.ci)
                assert (row.paired_random_ci_low.iloc[0], row.paired_random_ci_high.iloc[0]) == pytest.approx(
                    (lo[0], hi[0]), rel=1e-12)


def test_each_group_of_columns_is_computed_about_once(monkeypatch):
    """Matched columns and their random twins are summarised side by side: no group is computed twice for its
    twins (the former order computed about two groups in five again once the cache had let them go)."""
    spec = AuditSpec(pools=(10, 100, "full"), ks=(1, 5), negatives=("random", "pathology_matched"))
    qv = audit_queries(_labelled_set(), spec)
    calls = []
    groups = [(cols, (lambda make=make, g=g: (calls.append(g), make())[1])) for g, (cols, make) in enumerate(qv.groups)]
    qv.groups = groups
    # a cache of one byte: only the two groups it always keeps
    monkeypatch.setattr(summary_module, "_CACHE_BYTES", 1)
    summarise(qv)
    assert len(calls) == len(groups)
