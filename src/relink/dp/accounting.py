"""Privacy accounting as plain functions (no training state), after Opacus.

Accountants: ``prv`` (Gopi et al. 2021; tight, the default) or ``rdp`` (Mironov et al.; looser: at epsilon ~0.3
it asks for noticeably more noise for the same budget). Every epsilon reported names its accountant, with the
other's epsilon for the same sigma beside it.

The schedule is what Opacus's Poisson loader runs: ``q = 1 / ceil(n / B)`` and ``int(1 / q)`` steps per epoch,
which floating point often makes one step shorter than ``ceil(n / B)`` (n = 2976, B = 32: 93 batches, 92 steps).
Opacus calibrates sigma for ``int(epochs / q)`` steps, up to ``epochs - 1`` more than are run: the noise is then
very slightly conservative, and the epsilon reported is read from the accountant's record of the steps taken.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Iterator

import numpy as np

from ..errors import RelinkError

ACCOUNTANTS = ("prv", "rdp")


def check_accountant(name: str) -> str:
    if name not in ACCOUNTANTS:
        raise RelinkError(f"--accountant must be one of {', '.join(ACCOUNTANTS)}, got {name!r}")
    return name


#: delta may be at most 1/(DELTA_FACTOR n) for n private units: 1/n would permit publishing one unit outright, and
#: a delta near 1/n leaves a real chance (n x delta) that some unit's record is exposed.
DELTA_FACTOR = 10


def max_delta(n_units: int) -> float:
    """The largest delta allowed for ``n_units`` private units: ``1 / (10 n)``."""
    return 1.0 / (DELTA_FACTOR * n_units)


def default_delta(n_units: int) -> float:
    """A round delta within the rule: ``1 / (10 n)`` rounded down to one significant digit (n = 6,000 -> 1e-5)."""
    limit = max_delta(n_units)
    exponent = math.floor(math.log10(limit))
    return float(f"{math.floor(limit / 10.0 ** exponent)}e{exponent}")  # 3e-4, not 3.0000000000000003e-4


def check_budget(delta: float, n_units: int, unit: str = "pair", n_patients: int | None = None) -> None:
    """``delta`` must be at most ``1/(10 n)`` for ``n`` private units of kind ``unit``: refused in one line naming
    n, the unit and the largest delta allowed, and, for pairs of ``n_patients`` patients, whether the patient unit
    would allow it."""
    if n_units <= 0:
        raise RelinkError("the private training set is empty")
    if delta <= max_delta(n_units):
        return
    msg = (f"--delta {delta:g} is above 1/(10 n) for n = {n_units:,} private {unit}s: the largest delta allowed is "
           f"{max_delta(n_units):.3g}")
    if unit == "pair" and n_patients:
        holds = delta <= max_delta(n_patients)
        msg += (f" (with --privacy-unit patient, n = {n_patients:,} patients: "
                f"{'this delta would be allowed' if holds else f'at most {max_delta(n_patients):.3g}'})")
    raise RelinkError(msg)


def steps_per_epoch(n_units: int, batch_size: int) -> int:
    """Steps Opacus's Poisson loader runs per epoch: ``int(1 / q)``, ``q = 1 / ceil(n / B)``."""
    return int(1 / sample_rate(n_units, batch_size))


def sample_rate(n_units: int, batch_size: int) -> float:
    """Opacus's Poisson rate for a loader of ``ceil(n / B)`` batches (computed as Opacus does)."""
    if n_units < 1 or batch_size < 1:
        raise RelinkError(f"need at least one private unit and --batch-size >= 1, got {n_units} and {batch_size}")
    return 1 / math.ceil(n_units / batch_size)


def schedule(n_units: int, batch_size: int, epochs: int) -> tuple[float, int]:
    """``(sample_rate, steps)`` of Poisson-sampled training as Opacus runs it."""
    if epochs < 1:
        raise RelinkError(f"--epochs must be an integer >= 1, got {epochs}")
    return sample_rate(n_units, batch_size), steps_per_epoch(n_units, batch_size) * epochs


@contextlib.contextmanager
def quiet():
    """Warnings expected on every run that call for no action: torch's note that the heads' backward hooks fire
    on outputs (the cached trunk features need no gradient, by design), and RDP's that its best order is the
    largest it tries (the bound is still valid, only perhaps not the tightest)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Full backward hook is firing.*")
        warnings.filterwarnings("ignore", message=".*Optimal order is the largest alpha.*")
        yield


@contextlib.contextmanager
def numerics(rate: float) -> Iterator[None]:
    """Silence the one harmless floating-point event of the PRV accountant: at ``q = 1`` it computes
    ``log(1 - q) = -inf`` as the lower edge of the privacy loss's support, exactly right but a numpy "divide by
    zero" warning at every evaluation. Only that case, and only numpy's divide flag."""
    if rate >= 1:
        with np.errstate(divide="ignore"):
            yield
    else:
        yield


def _accountant(name: str, noise_multiplier: float, rate: float, steps: int):
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=check_accountant(name))
    acc.history = [(float(noise_multiplier), float(rate), int(steps))]
    return acc


def epsilon_for(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "prv") -> float:
    """Epsilon spent by ``steps`` Poisson-sampled Gaussian steps, per ``accountant`` (``inf`` without noise)."""
    if noise_multiplier <= 0:
        return math.inf
    acc = _accountant(accountant, noise_multiplier, sample_rate, steps)
    with quiet(), numerics(sample_rate):
        return float(acc.get_epsilon(delta=delta))


def noise_for(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str = "prv",
              epsilon_tolerance: float = 0.01) -> float:
    """A noise multiplier whose epsilon lies in ``[target - epsilon_tolerance, target]`` (Opacus's bisection, with
    the accountant named: Opacus defaults it to RDP there and to PRV in ``PrivacyEngine``)."""
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with quiet(), numerics(sample_rate):
            return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate,
                                              steps=steps, accountant=check_accountant(accountant),
                                              epsilon_tolerance=epsilon_tolerance))
    except ValueError as exc:
        raise RelinkError(f"no noise level reaches epsilon {target_epsilon} at delta {delta} ({exc})") from None
