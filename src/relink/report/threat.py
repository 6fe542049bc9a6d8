"""The declared threat model and the verdict thresholds, as one frozen spec; :func:`fit` checks it against the data.

Why the default thresholds:

* ``--lift-elevated 2``: below twice guessing the model adds no more re-links than a blind attacker already gets,
  which a release of de-identified images accepts by construction;
* ``--lift-high 10``: an order of magnitude above guessing with the whole interval above it is neither marginal
  nor a sampling accident (the study's strongest model is ~50x at N = 10,000);
* ``--excess-elevated 10``, ``--excess-high 100``: re-linked images *beyond chance* (so that a large release of a
  harmless model is not flagged for what guessing does), a policy choice the custodian should make and state:
  10 extra people is a handful of cases, 100 a systematic property of the release. They are not ``--min-cell``,
  which only decides what a breakdown prints;
* ``--confident-high 10`` at ``--confident-precision 0.9``: links an attacker can trust can be acted on one by
  one, unlike the excess, so the handful that makes a release elevated on average makes it high when confident.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from ..errors import RelinkError
from ..options import Range, Spec, check_spec, int_list, option, show
from ..retrieval.inputs import FULL
from ..retrieval.spec import parse_pools

LEVELS_ORDER = ("low", "inconclusive", "elevated", "high")  # most severe last
# a release beyond any cohort there is (a billion images) is a typo; larger counts would also print float
# noise as digits
MAX_RELEASED = 10**9
MIN_BOOT = 100  # a verdict needs an interval: fewer replicates cannot place a 2.5% tail


def _pool_sizes(value: Any) -> tuple:
    """Pool sizes (integers >= 2) and/or ``full`` (every audited pair), repeated and/or comma-separated, in order."""
    return parse_pools(value, minimum=2)


def _top_k(value: Any) -> tuple[int, ...]:
    return tuple(sorted(int_list(value, "K")))


def _fail_on(value: Any) -> str:
    if value not in ("elevated", "high"):
        raise ValueError(f"choose elevated or high, got {value!r}")
    return value


@dataclass(frozen=True)
class ReportSpec(Spec):
    """The declared threat model, the verdict thresholds and the interval settings."""

    attacker_pools: tuple = option((10000,), flag="--attacker-pool", parse=_pool_sizes,
                                   action="append", metavar="N",
                                   help="candidate reports the attacker ranks for each released image, that image's "
                                        "own report among them; 'full' for every audited pair (repeat or "
                                        "comma-separate for several)")
    report_coverage: float = option(1.0, flag="--report-coverage", check=Range(float, 0.0, 1.0, low_open=True),
                                    metavar="PI",
                                    help="share of the released images whose own report the attacker holds (every "
                                         "count is PI x M x Recall@K(N); default 1: all of them)")
    released: int | None = option(None, flag="--released", check=Range(int, 1, MAX_RELEASED), metavar="M",
                                  help="images the custodian releases (default: the audited rows)")
    top_k: tuple = option((10,), flag="--top-k", parse=_top_k, check=Range(int, 1),
                          help="K of 'within the top K' figures besides rank 1")
    lift_elevated: float = option(2.0, flag="--lift-elevated", check=Range(float, 1.0), metavar="LIFT",
                                  help="elevated when the Recall@1 lift over chance exceeds this (and its interval "
                                       "lies above chance)")
    lift_high: float = option(10.0, flag="--lift-high", check=Range(float, 1.0), metavar="LIFT",
                              help="high when the lower interval bound of the lift exceeds this")
    excess_elevated: float = option(10.0, flag="--excess-elevated", check=Range(float, 0.0), metavar="IMAGES",
                                    help="elevated when the released images re-linked at rank 1 beyond chance exceed "
                                         "this (and the lift's interval lies above chance)")
    excess_high: float = option(100.0, flag="--excess-high", check=Range(float, 0.0), metavar="IMAGES",
                                help="high when the lower interval bound of that excess exceeds this")
    confident_precision: float = option(0.9, flag="--confident-precision", check=Range(float, 0, 1, low_open=True),
                                        metavar="P",
                                        help="confident re-links: the precision the attacker's links must reach for "
                                             "the rule below")
    confident_high: float = option(10.0, flag="--confident-high", check=Range(float, 0.0), metavar="IMAGES",
                                   help="high when the lower interval bound of the images re-linked at "
                                        "--confident-precision (best threshold) exceeds this")
    release_name: str | None = option(None, flag="--release-name", metavar="NAME",
                                      help="the release this report decides on, printed in the decision record")
    fail_on: str | None = option(None, flag="--fail-on", parse=_fail_on, choices=("elevated", "high"),
                                 help="exit with status 3 when the verdict reaches this level (an inconclusive verdict counts as "
                                      "elevated: it reaches --fail-on elevated)")
    min_cell: int = option(10, flag="--min-cell", check=Range(int, 1), metavar="COUNT",
                           help="smallest count shown in a breakdown (smaller cells are merged or suppressed)")
    n_boot: int = option(1000, flag="--bootstrap", check=Range(int, MIN_BOOT, 1_000_000), metavar="B",
                         help="replicates wherever a figure is bootstrapped (the verdict's intervals are "
                              "patient-clustered and need none)")
    random_state: int = option(0, flag="--seed", check=Range(int, 0), help="seed of the bootstrap")
    ci: float = option(0.95, flag="--ci", check=Range(float, 0, 1, True, True), help="interval level")

    def __post_init__(self) -> None:
        check_spec(self)
        for low, high in (("lift_elevated", "lift_high"), ("excess_elevated", "excess_high")):
            a, b = getattr(self, low), getattr(self, high)
            if a > b:
                raise RelinkError(f"{_flag(low)} {show(a)} is above {_flag(high)} {show(b)}: thresholds out of order")

    @property
    def ks(self) -> tuple[int, ...]:
        """K = 1 and the top-K values."""
        return tuple(sorted({1, *self.top_k}))


def _flag(name: str) -> str:
    return next(f.metadata["relink"]["flag"] for f in fields(ReportSpec) if f.name == name)


FALLBACK_POOLS = (100, 1000)  # matched pools of the whole label vector fill only at moderate N


@dataclass(frozen=True)
class Threat:
    """The declared threat model fitted to an audited set (:func:`fit`): ``spec`` with every pool an integer
    (``full``: the audited pair count ``n_rows``), ``declared`` the pools as written, ``released`` the count M."""

    spec: ReportSpec
    declared: tuple
    released: int
    n_rows: int

    def audit_pools(self, with_hard: bool) -> tuple[int, ...]:
        """The pools the audit pass runs: the declared ones, and with pathology-matched pools the
        :data:`FALLBACK_POOLS` between the largest K and the largest declared pool (a matched pool of the declared
        size is often filled only by the most common label vectors)."""
        pools = tuple(self.spec.attacker_pools)
        if with_hard:
            pools += tuple(p for p in FALLBACK_POOLS
                           if max(self.spec.ks) < p < max(pools) and p <= self.n_rows and p not in pools)
        return pools


def fit(spec: ReportSpec, n_rows: int) -> Threat:
    """Check the spec against an audited set of ``n_rows`` pairs and resolve its pools: the one place the
    report reads pool sizes against the data."""
    pools = tuple(dict.fromkeys(n_rows if p == FULL else p for p in spec.attacker_pools))
    for n in pools:
        if n > n_rows:
            raise RelinkError(f"--attacker-pool {n}: larger than the audited set ({n_rows} pairs); the audit cannot "
                              "draw a pool of that size (audit more rows, declare a smaller pool, or "
                              "--attacker-pool full)")
    if max(spec.ks) > min(pools):
        raise RelinkError(f"--top-k {max(spec.ks)}: larger than the smallest --attacker-pool ({min(pools)})")
    released = int(spec.released) if spec.released is not None else int(n_rows)
    resolved = replace(spec, attacker_pools=pools) if pools != spec.attacker_pools else spec
    return Threat(resolved, tuple(spec.attacker_pools), released, int(n_rows))


def reached(level: str, threshold: str | None) -> bool:
    """Whether verdict ``level`` reaches ``threshold`` (``None``: never); inconclusive counts as elevated."""
    if threshold is None:
        return False
    level = "elevated" if level == "inconclusive" else level
    return LEVELS_ORDER.index(level) >= LEVELS_ORDER.index(threshold)
