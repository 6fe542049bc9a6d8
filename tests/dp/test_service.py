"""The mitigation service: one spec resolved once, a sweep as one front-door call per epsilon, and the trade-off."""

import math

import numpy as np
import pytest
import torch

from helpers.sets import tiny_model_set, toy_heads, toy_set
from relink import embeddings as emb
from relink.api.mitigate import mitigate
from relink.dp.apply import apply_heads, heads_fingerprint
from relink.dp.spec import MitigationSpec, NOT_FOR_RELEASE
from relink.dp.start import random_heads
from relink.dp.train import fit_heads
from relink.errors import RelinkError

pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")


@pytest.fixture(scope="module")
def tiny():
    from relink.models import load_model

    ckpt, es_dir = tiny_model_set(80)
    return load_model(str(ckpt)), emb.load(es_dir)


def test_defaults_live_in_the_spec_and_match_the_paper():
    spec = MitigationSpec(epsilon=0.34, delta=6e-6)
    assert (spec.epochs, spec.batch_size, spec.lr, spec.clip_norm, spec.accountant) == (10, 256, 1e-2, 1.0, "prv")
    assert spec.temperature == 0.07 and spec.init_seed == 0 and spec.reproducible_noise is None and spec.for_release
    assert not spec.but(reproducible_noise=0).for_release and spec.but(reproducible_noise=0).release_note == NOT_FOR_RELEASE


def test_the_temperature_is_the_specs_never_the_models_learned_one(tiny):
    loaded, es = tiny
    scale = loaded.model.logit_scale
    kept = float(scale.detach())
    try:
        with torch.no_grad():
            scale.fill_(math.log(30.0))  # as if learned on the private rows: temperature 1/30
        result = mitigate(es, MitigationSpec(private=False, epochs=1, batch_size=8), model=loaded)
    finally:
        with torch.no_grad():
            scale.fill_(kept)
    assert result.report["temperature"] == 0.07
    result = mitigate(es, MitigationSpec(private=False, epochs=1, batch_size=8, temperature=0.05), model=loaded)
    assert result.report["temperature"] == 0.05


def test_a_sweep_is_one_run_per_epsilon_from_one_random_start(tiny):
    """The paper's sweep: one `relink.mitigate` call per epsilon (and one without DP) with one spec otherwise."""
    from relink.models.heads import extract_heads

    loaded, es = tiny
    train, bank = es.split("train"), es.split("validate")
    spec = MitigationSpec(epsilon=0.5, delta=1e-3, accountant="rdp", epochs=1, batch_size=8, temperature=0.07,
                          reproducible_noise=0)
    runs = [mitigate(es, spec.but(epsilon=e) if e else spec.but(epsilon=None, delta=None, private=False), model=loaded)
            for e in (0.5, 4.0, None)]
    low, high, plain = (r.report for r in runs)
    assert low["noise_multiplier"] > high["noise_multiplier"] > 0 and low["epsilon"] <= 0.5 + 1e-9
    assert plain["private"] is False and plain["delta"] is None and plain["epsilon"] is None
    assert all(r.report["for_release"] is False for r in runs)  # a study: reproducible noise, and one run without DP
    assert all(r.report["trained_on"]["start"] == "random-init" for r in runs)
    assert all(r.notes and r.notes[0] == r.report["bank_note"] for r in runs)
    # the control (no DP) starts where the DP runs start: the seeded random heads, not the model's own
    own = extract_heads(loaded.model)
    start = random_heads(own, spec.init_seed)
    assert heads_fingerprint(start) != heads_fingerprint(own)
    direct, _ = fit_heads(train, bank, start, spec.but(epsilon=None, delta=None, private=False), progress=False)
    assert heads_fingerprint(direct) == heads_fingerprint(runs[2].heads)
    # the same DP spec twice (published noise seed): the same heads, so every epsilon's run is replayable as a study
    again = mitigate(es, spec, model=loaded)
    assert heads_fingerprint(again.heads) == heads_fingerprint(runs[0].heads)
    with pytest.raises(RelinkError, match="overlaps the non-train rows"):
        mitigate(es, spec, model=loaded, bank=es.split("test"))


def test_random_start_follows_open_clips_rule_and_its_seed_alone(tiny):
    from relink.models.heads import extract_heads

    own = extract_heads(tiny[0].model)
    a, b, c = random_heads(own, 3), random_heads(own, 3), random_heads(own, 4)
    assert heads_fingerprint(a) == heads_fingerprint(b) != heads_fingerprint(c)
    for name in ("image", "text"):
        w = getattr(a, name).weight.detach().numpy()
        assert w.shape == getattr(own, name).weight.shape
        # open_clip draws a projection N(0, width^-1/2): the sample std within 10% of it
        assert w.std() == pytest.approx(w.shape[1] ** -0.5, rel=0.1) and abs(w.mean()) < 0.02


def test_mitigate_in_python_matches_the_cli_contract(tiny):
    loaded, es = tiny
    spec = MitigationSpec(private=False, epochs=1, batch_size=8)
    result = mitigate(es, spec, model=loaded)
    assert result.report["bank"].startswith("the validate split") and result.report["for_release"] is False
    assert "no privacy guarantee" in result.report["release_reason"]
    assert "get no guarantee" in result.report["bank_note"]
    assert [name for name, _ in result.sets] == [es.path.name]


def recall_at_1(es: emb.EmbeddingSet) -> float:
    """Image-to-report Recall@1 over the whole set, by brute force (the truth must outscore every other)."""
    scores = es.unit("image") @ es.unit("text").T
    truth = np.diag(scores)
    return float(np.mean((scores > truth[:, None]).sum(axis=1) == 0))


def macro_probe(es: emb.EmbeddingSet) -> float:
    from relink.utility.probe import probe_embeddings

    table = probe_embeddings(es, "projected")
    return float(table.loc[table["label"] == "macro", "value"].iloc[0])


def test_private_heads_cut_relinkage_while_the_probe_holds():
    """The paper's trade-off on toy trunks shaped like a real model's (shared identity and labels,
    modality-specific nuisance, little isotropic noise, embed dim above the latent count)."""
    shape = dict(di=64, dt=64, noise=0.3, identity=0.15, label_strength=1.0, nuisance=16, label_flip=0.15)
    es = toy_set(n_patients=500, per_patient=2, heads=toy_heads(64, 64, 48), seed=0, **shape)
    base = MitigationSpec(private=False, epochs=10, batch_size=64, lr=3e-3, temperature=0.07, reproducible_noise=0)
    model, _ = fit_heads(es.split("train"), es.split("validate"), toy_heads(64, 64, 48), base, progress=False)
    es = apply_heads(es, model)
    private = MitigationSpec(epsilon=0.34, delta=1e-4, accountant="rdp", epochs=5, temperature=0.07, reproducible_noise=0)
    heads, rep = fit_heads(es.split("train"), es.split("validate"), model, private, progress=False)
    after = apply_heads(es, heads)
    before_r, after_r = recall_at_1(es.split("test")), recall_at_1(after.split("test"))
    assert before_r > 0.3 and (after_r - before_r) / before_r < -0.3 and rep["epsilon"] <= 0.34 + 1e-9
    assert abs(macro_probe(after) - macro_probe(es)) < 0.01
