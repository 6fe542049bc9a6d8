"""The DP guarantee holds in each step: bounded sensitivity, correct per-sample gradients, the accounted epsilon
and the noise."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from helpers.sets import privatised_gradient
from relink.dp import steps as T
from relink.dp.heads_data import PairFeatures, PatientFeatures
from relink.dp.loss import BankInfoNCE, HeadPair, in_batch_infonce, pair_infonce, project_bank
from relink.dp.spec import MitigationSpec
from relink.dp.train import fit_heads
from relink.models.heads import Heads

pytestmark = [pytest.mark.filterwarnings("ignore:Full backward hook"),
              pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")]

DI, DT, E, TEMP = 20, 16, 8, 0.1


def heads(seed=0):
    torch.manual_seed(seed)
    return Heads(image=nn.Linear(DI, E, bias=False), text=nn.Linear(DT, E, bias=True))


def data(n=18, seed=0, unit="pair"):
    g = np.random.default_rng(seed)
    x, y = g.standard_normal((n, DI)).astype(np.float32), g.standard_normal((n, DT)).astype(np.float32)
    # make pairs similar so that losses (and gradients) differ across examples
    y[:, :8] += 2 * x[:, :8]
    return PairFeatures(x, y) if unit == "pair" else PatientFeatures(x, y, np.arange(n) % 7)


def bank(m=24, seed=9):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, DI, generator=g), torch.randn(m, DT, generator=g)


def spec(**kw) -> MitigationSpec:
    """A spec for the mechanism tests: fixed sigma (no calibration), temperature 0.07 unless given."""
    return MitigationSpec(**{"temperature": 0.07, **kw})


def build(ds, b, h, seed=0, loss_reduction="mean", poisson=True, **kw):
    return T.build(ds, b, h, spec(**kw), seed, loss_reduction=loss_reduction, poisson=poisson)


def flat(grads):
    return torch.cat([g.flatten() for g in grads])


def worst_removal(setup, full):
    """Max over j of || sum of clipped grads (all) - (all but j) ||."""
    g_all = flat(privatised_gradient(setup, full))
    worst = 0.0
    for j in range(len(full[0])):
        keep = [k for k in range(len(full[0])) if k != j]
        worst = max(worst, float((g_all - flat(privatised_gradient(setup, [t[keep] for t in full]))).norm()))
    return worst


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
@pytest.mark.parametrize("unit", ["pair", "patient"])
def test_removing_one_unit_moves_clipped_sum_by_at_most_clip_norm(mode, unit):
    ds, clip = data(unit=unit), 0.05
    setup = build(ds, bank(), heads(), noise_multiplier=0.0, clip_norm=clip, batch_size=len(ds),
                  grad_sample_mode=mode, loss_reduction="sum", poisson=False)
    full = next(iter(setup.loader))
    worst = worst_removal(setup, full)
    assert worst <= clip + 1e-5
    assert worst > 0.5 * clip  # clipping was active: units' raw gradients exceed the clip norm


def test_in_batch_infonce_breaks_the_bound():
    """Why the bank exists: with in-batch negatives one removal moves the clipped sum past the clip norm."""

    class InBatch(nn.Module):
        reduction = "sum"

        def forward(self, u, v, bank_image, bank_text, mask=None):
            per = in_batch_infonce(u, v, TEMP)
            return per.sum() if self.reduction == "sum" else per

    ds, clip = data(n=10), 0.05
    setup = build(ds, bank(), heads(), noise_multiplier=0.0, clip_norm=clip, batch_size=len(ds),
                  grad_sample_mode="hooks", loss_reduction="sum", poisson=False)
    setup.criterion = InBatch()
    assert worst_removal(setup, next(iter(setup.loader))) > 1.1 * clip


@pytest.mark.parametrize("unit", ["pair", "patient"])
def test_opacus_per_sample_gradients_equal_vmap_reference(unit):
    from torch.func import functional_call, grad, vmap

    ds = data(unit=unit)
    b = bank()
    h = heads()
    setup = build(ds, b, h, noise_multiplier=0.0, clip_norm=1e6, batch_size=len(ds), grad_sample_mode="hooks",
                  loss_reduction="sum", poisson=False, temperature=TEMP)
    batch = next(iter(setup.loader))
    T.batch_loss(setup, batch).backward()
    names = [n for n, _ in setup.heads.named_parameters()]
    opacus = {n: p.grad_sample.detach().clone() for n, p in setup.heads.named_parameters()}
    params = {n: p.detach().clone() for n, p in setup.heads.named_parameters()}
    ref_heads = HeadPair(T.copy_linear(h.image), T.copy_linear(h.text))
    bank_i, bank_t = project_bank(h.image, b[0]), project_bank(h.text, b[1])

    def unit_loss(p, *item):
        u, v = functional_call(ref_heads, p, (item[0][None], item[1][None]))
        per = pair_infonce(u, v, bank_i, bank_t, TEMP)
        return (per * item[2][None]).sum() if len(item) == 3 else per.sum()

    ref = vmap(grad(unit_loss), in_dims=(None,) + (0,) * len(batch))(params, *batch)
    for n in names:
        torch.testing.assert_close(opacus[n], ref[n], rtol=1e-4, atol=1e-6)
    # ghost clipping never builds per-sample gradients, only their norms: those must agree too
    ghost = build(ds, b, h, noise_multiplier=0.0, clip_norm=1e6, batch_size=len(ds), grad_sample_mode="ghost",
                  loss_reduction="sum", poisson=False, temperature=TEMP)
    T.batch_loss(ghost, batch).backward()
    norms = torch.stack([ref[n].flatten(1).norm(dim=1) for n in names]).norm(dim=0)
    torch.testing.assert_close(ghost.model.per_sample_gradient_norms, norms, rtol=1e-4, atol=1e-6)


def test_reported_epsilon_matches_opacus_accountants():
    from opacus.accountants import PRVAccountant, RDPAccountant

    from helpers.sets import toy_set

    es = toy_set(n_patients=100, per_patient=2, seed=1)
    train, bnk = es.split("train"), es.split("validate")
    init = Heads(image=nn.Linear(48, E, bias=False), text=nn.Linear(40, E, bias=False))
    _, rep = fit_heads(train, bnk, init, spec(epsilon=1.0, delta=1e-4, epochs=2, batch_size=32, lr=1e-3), progress=False)
    q = 1 / math.ceil(len(train) / 32)
    assert rep["sample_rate"] == pytest.approx(q)
    assert rep["steps"] == rep["accountant_steps"] == rep["planned_steps"]
    prv, rdp = PRVAccountant(), RDPAccountant()
    prv.history = rdp.history = [(rep["noise_multiplier"], q, rep["steps"])]
    assert rep["accountant"] == "prv"
    assert rep["epsilon"] == pytest.approx(prv.get_epsilon(delta=1e-4), rel=1e-6)
    assert rep["rdp_epsilon"] == pytest.approx(rdp.get_epsilon(delta=1e-4), rel=1e-6)
    assert rep["epsilon"] <= 1.0 + 0.02  # calibrated to the target (PRV's own eps_error is 0.01)
    assert rep["rdp_epsilon"] > rep["epsilon"]  # RDP is looser for the same noise


def test_noise_std_is_noise_multiplier_times_clip_over_expected_batch():
    ds, sigma, clip = data(n=16), 3.0, 0.1
    kw = dict(clip_norm=clip, batch_size=len(ds), grad_sample_mode="ghost", loss_reduction="mean", poisson=False)
    silent = build(ds, bank(), heads(), noise_multiplier=0.0, **kw)
    batch = next(iter(silent.loader))
    base = flat(privatised_gradient(silent, batch))
    noisy = build(ds, bank(), heads(), noise_multiplier=sigma, seed=3, **kw)
    assert noisy.optimizer.expected_batch_size == 16
    resid = torch.stack([flat(privatised_gradient(noisy, batch)) - base for _ in range(40)])
    expected = sigma * clip / 16
    assert float(resid.std()) == pytest.approx(expected, rel=0.03)
    assert abs(float(resid.mean())) < 0.05 * expected


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_empty_poisson_batch_is_a_noise_only_step_that_is_accounted(mode):
    """Both the ghost-clipping and the per-sample path: the heads move by pure noise of the
    mechanism's scale (sigma * C / expected batch), and the accountant counts the step."""
    ds, sigma, clip, batch_size = data(n=60), 2.0, 0.5, 6
    setup = build(ds, bank(), heads(), noise_multiplier=sigma, clip_norm=clip, batch_size=batch_size,
                  grad_sample_mode=mode)
    before = [p.detach().clone() for p in setup.heads.parameters()]
    empty = [torch.zeros(0, DI), torch.zeros(0, DT)]
    noise = []
    for _ in range(10):
        assert T.train_step(setup, empty) is None
        noise.append(flat([p.grad for p in setup.heads.parameters()]))
    assert any(not torch.equal(a, p) for a, p in zip(before, setup.heads.parameters()))
    assert setup.engine.accountant.history[-1][2] == 10
    noise = torch.stack(noise)
    expected = sigma * clip / setup.optimizer.expected_batch_size
    assert setup.optimizer.expected_batch_size == pytest.approx(batch_size, rel=0.2)
    assert float(noise.std()) == pytest.approx(expected, rel=0.05)
    assert abs(float(noise.mean())) < 0.05 * expected


def test_bank_loss_depends_only_on_its_own_pair():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(5, E, generator=g), torch.randn(5, E, generator=g)
    bi, bt = torch.nn.functional.normalize(torch.randn(7, E, generator=g), dim=-1), torch.nn.functional.normalize(torch.randn(7, E, generator=g), dim=-1)
    crit = BankInfoNCE(TEMP, reduction="none")
    full = crit(u, v, bi, bt)
    assert full.shape == (5,)
    torch.testing.assert_close(crit(u[:3], v[:3], bi, bt), full[:3])
    with pytest.raises(ValueError):
        BankInfoNCE(0.0)
