"""Candidate pool sizes: parsed from flags, fitted to a candidate set, adjusted for a set.

A pool is an integer N (the truth plus N - 1 distractors) or ``"full"``
(every candidate). An N above the candidate count M is an error named by
``--pools``, unless ``--pools-clip`` drops it (the dropped sizes are returned
for the caller to say once); K must not exceed any N. Imports nothing heavy:
the command line builds its parser from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Sequence

from ..errors import RelinkError
from ..options import Listed

FULL = "full"


def pool_size(item: Any, minimum: int = 1) -> int | str:
    """One pool size: an integer >= ``minimum`` or ``full``."""
    if isinstance(item, str) and item.strip().lower() == FULL:
        return FULL
    try:
        n = int(item)
        if n != float(item):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"pool size {str(item)!r} is neither an integer nor 'full'") from None
    if n < minimum:
        raise ValueError(f"pool size N={n} must be at least {minimum}"
                         + (" (the truth and one other report), or 'full'" if minimum == 2 else ""))
    return n


POOLS = Listed(pool_size, "pool size")  # the audit's --pools: repeated flags and/or comma lists, in order, each once


def parse_pools(value: Any, minimum: int = 1) -> tuple:
    """:data:`POOLS` with another least size (the report's ``--attacker-pool``: 2)."""
    return Listed(partial(pool_size, minimum=minimum), "pool size")(value)


@dataclass(frozen=True)
class Pools:
    """Pool sizes (ints >= 1 and/or ``"full"``), in the order given."""

    sizes: tuple

    def fit(self, n_candidates: int, clip: bool = False) -> tuple[list[int | str], list[int]]:
        """The pools ``n_candidates`` can fill, in order, and the sizes ``clip`` dropped."""
        out = [p for p in self.sizes if p == FULL or p <= n_candidates]
        dropped = [p for p in self.sizes if p != FULL and p > n_candidates]
        if dropped and not clip:
            n = dropped[0]
            raise RelinkError(f"pool size N={n} is larger than the candidate set ({n_candidates} candidates); "
                              "use 'full', a smaller N, or --pools-clip to drop such pools")
        if not out:
            listed = ", ".join(map(str, dropped))
            raise RelinkError(f"no pool size left to audit: every N ({listed}) is larger than the candidate set "
                              f"({n_candidates} candidates); add 'full' or a smaller N")
        return out, dropped

    def for_set(self, n_candidates: int) -> tuple:
        """The pools to audit on ``n_candidates`` candidates: a finite pool of exactly that size *is* the full
        pool, so when ``full`` is listed it is audited once, as ``full``."""
        if FULL not in self.sizes:
            return tuple(self.sizes)
        return tuple(p for p in self.sizes if p == FULL or int(p) != n_candidates)

    def check_ks(self, ks: Sequence[int], n_candidates: int) -> list[int]:
        """The K values (ints >= 1), sorted, each once; refused when one exceeds a pool."""
        for p in self.sizes:
            n = n_candidates if p == FULL else p
            big = [k for k in ks if k > n]
            if big:
                raise RelinkError(f"K={big[0]} exceeds the pool size N={n}" + (" (the full pool)" if p == FULL else ""))
        return sorted(set(ks))

