"""The audit's options as one frozen spec, shared by ``relink audit``, the library, the paper and the report.

Each field declares its flag, help and check once (:func:`relink.options.option`);
``relink audit`` is generated from it and an out-of-range value is refused
with the flag's name, from the command line or from Python. Checks that
depend on the data are made when the audit sees it (:class:`relink.retrieval.pools.Pools`).
"""

from __future__ import annotations

from dataclasses import dataclass
from ..options import Listed, Range, Spec, check_spec, integer, one_of, option, real, some_of
from .inputs import DIRECTIONS, FULL, LEVELS, TIES
from .pools import POOLS, parse_pools  # noqa: F401 (parse_pools: imported from here by the report)
from .matching import HARD_NEGATIVES, MISSING, UNCERTAIN

NEGATIVES = ("random",) + HARD_NEGATIVES  # the order rows appear in a table
DEFAULT_POOLS = (10, 100, 1000, 10000, FULL)


@dataclass(frozen=True)
class AuditSpec(Spec):
    """What to audit and how (see :mod:`relink.retrieval.audit` for what each row means)."""

    TEXT_FIELDS = ("pools",)  # integers beside "full": recorded as text

    pools: tuple = option(DEFAULT_POOLS, flag="--pools", parse=POOLS,
                          help="pool sizes N (the truth plus N-1 random distractors) and/or 'full'")
    ks: tuple = option((1, 5, 10), flag="--k", parse=Listed(integer("K"), "K", sort=True), check=Range(int, 1), help="K values for Recall@K")
    directions: tuple = option(DIRECTIONS, flag="--directions", parse=some_of(DIRECTIONS, "direction", both=True),
                               help="image_to_report, report_to_image, or both")
    levels: tuple = option(LEVELS, flag="--levels", parse=some_of(LEVELS, "level"), help="study and/or patient")
    negatives: tuple = option(("random",), flag="--negatives", parse=some_of(NEGATIVES, "negatives"), cli=False,
                              help="random, pathology_matched, positive_set_matched")
    n_boot: int = option(1000, flag="--bootstrap", check=Range(int, 0, 1_000_000), metavar="B",
                         help="0: no intervals; otherwise patient-clustered intervals (no resampling) and B replicates "
                              "where a statistic is bootstrapped")
    random_state: int = option(0, flag="--seed", check=Range(int, 0), help="seed of the bootstrap and Monte Carlo draws")
    ci: float = option(0.95, flag="--ci", check=Range(float, 0, 1, True, True), help="interval level")
    monte_carlo_pools: int = option(0, flag="--monte-carlo", check=Range(int, 0, 100_000), metavar="P",
                                    help="add Monte Carlo rows with P literal pools per query (a cross-check)")
    pools_clip: bool = option(False, flag="--pools-clip", help="drop pools larger than the candidate set instead of failing")
    ties: str = option("random", flag="--ties", parse=one_of(TIES), choices=TIES,
                       help="how candidates with an embedding identical to the truth's rank against it")
    # Zero would let float rounding count a duplicate of the truth both as tied and as outranking
    # it; above 1e-2 a "tolerance" would hide real score differences (cosines lie in [-1, 1]).
    tie_tol: float = option(1e-6, flag="--tie-tol", check=Range(float, 0, 1e-2, low_open=True),
                            help="a candidate outranks the truth only when it scores more than this above it")
    uncertain: str = option("own", flag="--uncertain", parse=one_of(UNCERTAIN), choices=UNCERTAIN,
                            help="hard negatives: how an uncertain (-1) label is matched")
    missing: str = option("negative", flag="--missing", parse=one_of(MISSING), choices=MISSING,
                          help="hard negatives: how a missing label is matched")
    device: str | None = option(None, flag="--device", help="torch device (default: cuda when available, else cpu)")
    confident: tuple = option((), flag="--confident", parse=Listed(real("precision target"), sort=True),
                              check=Range(float, 0, 1, True, True),
                              metavar="P", help="also report the images re-linked at precision >= P by a threshold "
                                                "attacker (e.g. 0.9,0.99; random negatives)")
    confident_calibration: int = option(1000, flag="--confident-calibration", check=Range(int, 1), metavar="S",
                                        help="labelled pairs (whole patients, held apart) on which the calibrating "
                                             "attacker sets its threshold")
    confident_grid: int = option(32, flag="--confident-grid", check=Range(int, 2, 4096), metavar="G",
                                 help="thresholds counted per query for the threshold attacker")

    def __post_init__(self) -> None:
        check_spec(self)

    @property
    def hard(self) -> tuple[str, ...]:
        """The hard-negative kinds asked for, coarsest first (each refines the one before)."""
        return tuple(g for g in HARD_NEGATIVES[::-1] if g in self.negatives)
