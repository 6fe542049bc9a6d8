"""Privacy accounting as plain functions (no training state), after Opacus.

DP-SGD with Poisson sampling rate ``q``, noise multiplier ``sigma`` and
``steps`` steps is analysed by a named accountant: ``prv`` (the privacy loss
random variable accountant, Gopi et al. 2021; tight, the default) or ``rdp``
(Renyi DP, Mironov et al.; looser: at epsilon ~0.3 it asks for noticeably
more noise for the same budget). Every epsilon the project reports names its
accountant, and reports the other's epsilon for the same sigma beside it.

The schedule follows Opacus's ``make_private``: a loader of ``ceil(n / B)``
batches has ``q = 1 / ceil(n / B)``, and one epoch is ``ceil(n / B)`` steps.
"""

from __future__ import annotations

import math
import warnings

from ..errors import RelinkError

ACCOUNTANTS = ("prv", "rdp")


def check_accountant(name: str) -> str:
    if name not in ACCOUNTANTS:
        raise RelinkError(f"--accountant must be one of {', '.join(ACCOUNTANTS)}, got {name!r}")
    return name


def check_budget(epsilon: float, delta: float, n_units: int) -> None:
    """Epsilon > 0, 0 < delta < 1/n (a delta of 1/n or more allows publishing one unit outright)."""
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise RelinkError(f"--epsilon must be a finite number > 0, got {epsilon}")
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise RelinkError(f"--delta must lie in (0, 1), got {delta}")
    if n_units <= 0:
        raise RelinkError("the private training set is empty")
    if delta >= 1.0 / n_units:
        raise RelinkError(
            f"--delta {delta:g} is not below 1/n = {1.0 / n_units:.3g} for n = {n_units} private units; "
            "such a delta permits releasing a unit's data outright (choose delta << 1/n)"
        )


def schedule(n_units: int, batch_size: int, epochs: int) -> tuple[float, int]:
    """``(sample_rate, steps)`` of Poisson-sampled training as Opacus runs it."""
    if batch_size < 1 or epochs < 1:
        raise RelinkError(f"--batch-size and --epochs must be >= 1, got {batch_size} and {epochs}")
    batches = math.ceil(n_units / batch_size)
    return 1.0 / batches, batches * epochs


def _accountant(name: str, noise_multiplier: float, sample_rate: float, steps: int):
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=check_accountant(name))
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    return acc


def epsilon_for(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "prv") -> float:
    """Epsilon spent by ``steps`` Poisson-sampled Gaussian steps, per ``accountant``.

    ``noise_multiplier`` 0 means no privacy: returns ``inf``.
    """
    if noise_multiplier <= 0:
        return math.inf
    acc = _accountant(accountant, noise_multiplier, sample_rate, steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PRV warns about its own discretisation on tiny budgets
        return float(acc.get_epsilon(delta=delta))


def noise_for(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str = "prv",
              epsilon_tolerance: float = 0.01) -> float:
    """The smallest noise multiplier (to ``epsilon_tolerance``) that keeps epsilon <= target.

    Same bisection as Opacus's ``get_noise_multiplier``, with the accountant
    named explicitly (Opacus defaults it to RDP there and to PRV in
    ``PrivacyEngine``).
    """
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate,
                                              steps=steps, accountant=check_accountant(accountant),
                                              epsilon_tolerance=epsilon_tolerance))
    except ValueError as exc:
        raise RelinkError(f"no noise level reaches epsilon {target_epsilon} at delta {delta} ({exc})") from None
