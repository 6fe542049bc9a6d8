"""Effects tables: before/after, transfer without retraining, the epsilon sweep."""

import numpy as np
import pytest

from dp_fixtures import toy_heads, toy_set
from relink.dp.apply import apply_heads
from relink.dp.effects import COMPARE_COLUMNS, before_after, epsilon_sweep, transfer
from relink.dp.train import fit_heads
from relink.errors import RelinkError

pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")


@pytest.fixture(scope="module")
def aligned():
    """A toy cohort whose heads were fitted (non-privately) to re-link well, and an external cohort."""
    es = toy_set(n_patients=150, per_patient=2, seed=0)
    heads, _ = fit_heads(es.split("train"), es.split("validate"), toy_heads(48, 40), private=False, epochs=15,
                         batch_size=32, lr=1e-2, progress=False)
    ext = toy_set(n_patients=60, per_patient=2, seed=7, prefix="x", cohort="external")
    return apply_heads(es, heads), heads, apply_heads(ext, heads)


def test_before_after_reports_the_relative_change(aligned):
    es, heads, _ = aligned
    noisy, _ = fit_heads(es.split("train"), es.split("validate"), heads, noise_multiplier=20.0, delta=1e-4, epochs=3,
                         batch_size=32, lr=5e-2, progress=False)
    after = apply_heads(es, noisy)
    table = before_after(es, after, pools=(10, 10_000), n_boot=20)
    assert list(table.columns) == list(COMPARE_COLUMNS)
    assert table["N"].tolist() == [10, len(es)]  # 10,000 is more than the set holds: its full pool
    row = table.iloc[0]
    assert row["before"] > 3 * row["chance"]  # the fitted heads re-link
    assert row["after"] < row["before"]
    assert row["relative_change"] == pytest.approx((row["after"] - row["before"]) / row["before"])
    same = before_after(es, apply_heads(es, heads), pools=(10,), n_boot=0)
    assert same["change"].abs().max() < 1e-6
    with pytest.raises(RelinkError, match="same rows"):
        before_after(es, es.split("train"), pools=(10,), n_boot=0)


def test_transfer_applies_the_same_heads_to_another_cohort(aligned):
    es, heads, ext = aligned
    other = toy_heads(48, 40, seed=3)
    table = transfer(ext, other, pools=(10,), n_boot=0)
    assert table["cohort"].tolist() == ["external"]
    assert table.iloc[0]["after"] < table.iloc[0]["before"]  # random heads break the external linkage too


def test_epsilon_sweep_gives_one_row_per_epsilon_and_eval_set(aligned):
    es, heads, ext = aligned
    table = epsilon_sweep(es.split("train"), es.split("validate"), {"internal": es.split("test"), "external": ext},
                          epsilons=(0.5, None), delta=1e-4, init=heads, N=10, n_boot=0,
                          fit_kwargs=dict(epochs=2, batch_size=32, lr=1e-2, accountant="rdp"))
    assert len(table) == 4 and set(table["eval"]) == {"internal", "external"}
    priv = table[table["private"]]
    assert (priv["accountant"] == "rdp").all() and (priv["epsilon_spent"] <= 0.5 + 0.01).all()
    assert table.loc[~table["private"], "epsilon"].isna().all()
    assert np.isfinite(table["probe_change"]).all() and (table["N"] == 10).all()


def test_private_heads_cut_relinkage_while_the_probe_holds():
    """The paper's trade-off on toy trunks shaped like a real model's (shared identity and labels,
    modality-specific nuisance, little isotropic noise, embed dim above the latent count)."""
    from relink.utility.probe import probe_embeddings

    shape = dict(di=64, dt=64, noise=0.3, identity=0.15, label_strength=1.0, nuisance=16, label_flip=0.15)
    es = toy_set(n_patients=500, per_patient=2, heads=toy_heads(64, 64, 48), seed=0, **shape)
    model, _ = fit_heads(es.split("train"), es.split("validate"), toy_heads(64, 64, 48), private=False, epochs=10,
                         batch_size=64, lr=3e-3, progress=False)
    es = apply_heads(es, model)
    private, rep = fit_heads(es.split("train"), es.split("validate"), model, epsilon=0.34, delta=1e-4, accountant="rdp",
                             progress=False)
    after = apply_heads(es, private)
    change = before_after(es.split("test"), after.split("test"), pools=(10_000,), n_boot=0).iloc[0]
    assert change["before"] > 0.3 and change["relative_change"] < -0.3
    macro = [float(t.loc[t["label"] == "macro", "value"].iloc[0]) for t in (probe_embeddings(s, "projected") for s in (es, after))]
    assert abs(macro[1] - macro[0]) < 0.01
