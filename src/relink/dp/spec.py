"""The mitigation's options as one frozen spec, shared by `relink mitigate`, the library and the paper.

Checks that need the data (delta at most 1/(10 n), the bank's disjointness) are made when the data is seen. Noise
is secret unless asked: ``reproducible_noise=None`` (the default) draws the seed from the operating system's
entropy and never records it (:func:`relink.dp.train.noise_seed`); an integer seeds the run so that a study can be
replayed, and every output then says it is :data:`NOT_FOR_RELEASE`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RelinkError
from ..options import Range, Spec, check_spec, one_of, option
from .accounting import ACCOUNTANTS

PRIVACY_UNITS = ("pair", "patient")  # what one DP guarantee protects (relink.dp.heads_data builds each)

GRAD_SAMPLE_MODES = ("ghost", "hooks", "functorch", "ew")
#: Beyond this the guarantee says nothing a custodian can use (e^20 ~ 5e8 as the likelihood ratio), and the PRV
#: accountant's sigma search grows without bound (a MIMIC-sized schedule: 24 s and 2 GB at epsilon 10, 350 s and
#: 7 GB at 100). Train with --non-private to go without DP.
EPSILON_MAX = 20.0
#: Seeds fit a 64-bit torch generator with room for the noise generator's ``seed + 1``.
SEED_MAX = 2**63 - 2
NOT_FOR_RELEASE = "for study, not for release: the noise can be replayed from the published seed"
NO_GUARANTEE = "trained without differential privacy: no privacy guarantee"


@dataclass(frozen=True)
class MitigationSpec(Spec):
    """How the projection heads are retrained (see :mod:`relink.dp.train` for the mechanism)."""

    epsilon: float | None = option(None, flag="--epsilon", check=Range(float, 0, EPSILON_MAX, low_open=True),
                                   help="target epsilon of the run, at most 20 (beyond it the guarantee says nothing; "
                                        "required unless --non-private)")
    delta: float | None = option(None, flag="--delta", check=Range(float, 0, 1, low_open=True, high_open=True),
                                 help="target delta, at most 1/(10 n) for n private units (required unless --non-private)")
    accountant: str = option("prv", flag="--accountant", parse=one_of(ACCOUNTANTS), choices=ACCOUNTANTS,
                             help="accountant that calibrates the noise and reports epsilon")
    clip_norm: float = option(1.0, flag="--clip-norm", check=Range(float, 0, low_open=True),
                              help="per-unit gradient clip norm")
    epochs: int = option(10, flag="--epochs", check=Range(int, 1), help="passes over the private set")
    batch_size: int = option(256, flag="--batch-size", check=Range(int, 1),
                             help="expected Poisson batch size (sample rate 1/ceil(n/B))")
    lr: float = option(1e-2, flag="--lr", check=Range(float, 0, low_open=True),
                       help="Adam learning rate (with the noise, it sets how far the heads move)")
    temperature: float = option(0.07, flag="--temperature", check=Range(float, 0, low_open=True),
                                help="fixed InfoNCE temperature, set before training (never the model's learned "
                                     "one, which saw the private rows; default: CLIP's initial 0.07)")
    init_seed: int = option(0, flag="--init-seed", check=Range(int, 0, SEED_MAX),
                            help="seed of the heads' random start (depends on no data, so it may be published)")
    privacy_unit: str = option("pair", flag="--privacy-unit", parse=one_of(PRIVACY_UNITS), choices=PRIVACY_UNITS,
                               help="what one guarantee protects: one study pair, or all of a patient's pairs")
    bank_size: int | None = option(None, flag="--bank-size", check=Range(int, 1),
                                   help="use a fixed random subset of this many bank rows (at most the bank; "
                                        "a larger value uses the whole bank)")
    grad_sample_mode: str = option("ghost", flag="--grad-sample-mode", parse=one_of(GRAD_SAMPLE_MODES),
                                   choices=("ghost", "hooks"), help="Opacus per-sample gradient mode")
    private: bool = option(True, flag="--non-private",
                           help="the same training without clipping or noise (a comparison; no guarantee)")
    reproducible_noise: int | None = option(None, flag="--reproducible-noise", check=Range(int, 0, SEED_MAX),
                                            metavar="SEED",
                                            help="seed the sampling and noise (a study: outputs are marked not for "
                                                 "release; default: a secret seed from the OS, never recorded)")
    noise_multiplier: float | None = option(None, flag="--noise-multiplier", check=Range(float, 0), cli=False,
                                            help="fixed sigma instead of calibrating to --epsilon (tests, benchmarks)")

    def __post_init__(self) -> None:
        check_spec(self)
        if not self.private:
            given = [f for f, v in (("--epsilon", self.epsilon), ("--delta", self.delta)) if v is not None]
            if given:
                raise RelinkError(f"--non-private trains without a guarantee: drop {' and '.join(given)}")
        elif self.noise_multiplier is None and (self.epsilon is None or self.delta is None):
            raise RelinkError("--epsilon and --delta are required (or pass --non-private)")

    @property
    def for_release(self) -> bool:
        """Whether the noise allows a release: private, with secret noise (the start and the trunk are
        judged with the data, :func:`relink.dp.release.status`)."""
        return self.private and self.reproducible_noise is None

    @property
    def release_note(self) -> str | None:
        """The sentence every output of a run that is not for release carries (``None`` otherwise)."""
        if not self.private:
            return NO_GUARANTEE
        return None if self.for_release else NOT_FOR_RELEASE
