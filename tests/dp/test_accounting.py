"""The planned schedule is what Opacus's Poisson loader runs; the delta message; the divide-by-zero case; the
noise calibrated to a target epsilon, and the accountants' difference."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from relink.dp import accounting

CASES = [(n, b) for n in (1, 2, 7, 100, 999, 1000, 1001, 2976, 4095, 12_345) for b in (1, 3, 8, 32, 64, 256, 1000)]


def opacus_steps(n: int, batch_size: int) -> tuple[int, int]:
    """(len, batches yielded) of one epoch of Opacus's own DPDataLoader over a loader of batch_size."""
    from opacus.data_loader import DPDataLoader

    loader = DataLoader(TensorDataset(torch.zeros(n, 1)), batch_size=batch_size)
    dp = DPDataLoader.from_data_loader(loader, generator=torch.Generator().manual_seed(0))
    return len(dp), sum(1 for _ in dp)


@pytest.mark.parametrize("n,batch_size", CASES)
def test_steps_per_epoch_are_those_opacus_runs(n, batch_size):
    length, yielded = opacus_steps(n, batch_size)
    assert length == yielded
    assert accounting.steps_per_epoch(n, batch_size) == yielded
    assert accounting.schedule(n, batch_size, 3) == (pytest.approx(1 / math.ceil(n / batch_size)), 3 * yielded)


def test_floating_point_makes_some_epochs_one_step_shorter_than_ceil():
    # the example, and proof that the reference really differs from ceil(n / B) somewhere
    assert opacus_steps(2976, 32)[1] == 92 != math.ceil(2976 / 32)
    short = [(n, b) for n, b in CASES if opacus_steps(n, b)[1] != math.ceil(n / b)]
    assert short


def test_prv_accounting_at_rate_one_raises_no_warning():
    """A batch size of at least n gives q = 1; Opacus's PRV then takes log(0) (harmless: -inf is the right
    edge). The accounting functions must not let numpy's divide-by-zero warning out, and must stay right."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eps = accounting.epsilon_for(5.0, 1.0, 4, 1e-5, "prv")
        sigma = accounting.noise_for(2.0, 1e-5, 1.0, 4, "prv")
    # with q = 1 every step is the plain Gaussian mechanism: compare with RDP's closed form bound
    rdp = accounting.epsilon_for(5.0, 1.0, 4, 1e-5, "rdp")
    assert 0 < eps <= rdp
    assert accounting.epsilon_for(sigma, 1.0, 4, 1e-5, "prv") <= 2.0
    assert np.geterr()["divide"] == "warn"  # the silencing is scoped: it does not leak out


def test_a_private_run_with_one_batch_an_epoch_warns_nothing():
    """The eight "divide by zero" RuntimeWarnings of `relink mitigate` came from the calibration and the
    final epsilon at q = 1; Opacus's unconditional secure-RNG notice is the only other warning."""
    from helpers.sets import toy_heads, toy_set
    from relink.dp.spec import MitigationSpec
    from relink.dp.train import fit_heads

    es = toy_set(n_patients=30, per_patient=2, seed=0)
    train = es.split("train")
    spec = MitigationSpec(epsilon=1.0, delta=1e-3, epochs=2, batch_size=2 * len(train), temperature=0.07)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, rep = fit_heads(train, es.split("validate"), toy_heads(48, 40), spec, progress=False)
    assert rep["sample_rate"] == 1.0 and 0 < rep["epsilon"] <= 1.0 + 0.02


@pytest.mark.parametrize("acc,target", [("rdp", 0.34), ("rdp", 2.0), ("prv", 1.0)])
def test_noise_for_meets_the_target_and_is_the_smallest_that_does(acc, target):
    """Independent of the bisection: a fresh accountant's epsilon for the returned sigma is within
    tolerance below the target, and 1% less noise overshoots it."""
    from opacus.accountants import PRVAccountant, RDPAccountant

    q, steps, delta, tol = 64 / 5000, 3 * 78, 1e-5, 1e-3
    sigma = accounting.noise_for(target, delta, q, steps, acc, epsilon_tolerance=tol)

    def eps(s):
        a = {"prv": PRVAccountant, "rdp": RDPAccountant}[acc]()
        a.history = [(s, q, steps)]
        return a.get_epsilon(delta=delta)

    assert target - tol <= eps(sigma) <= target
    assert eps(0.99 * sigma) > target


def test_accountants_differ_and_name_matters():
    # RDP is looser: more noise for the same target; at MIMIC-like scale (small q) a far larger
    # epsilon for the same noise (measured 0.555 vs 0.337), so every epsilon names its accountant
    q, steps, delta = 256 / 20000, 5 * 78, 6e-6
    assert accounting.noise_for(0.34, delta, q, steps, "rdp") > accounting.noise_for(0.34, delta, q, steps, "prv")
    q, steps = accounting.schedule(300_000, 512, 5)
    sigma = accounting.noise_for(0.34, delta, q, steps, "prv")
    assert accounting.epsilon_for(sigma, q, steps, delta, "rdp") > 1.3 * accounting.epsilon_for(sigma, q, steps, delta, "prv")
    assert accounting.epsilon_for(0.0, q, steps, delta) == math.inf
    assert accounting.schedule(1000, 256, 3) == (0.25, 12)
