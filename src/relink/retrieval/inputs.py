"""Checks of audit options against the data; every failure is one RelinkError line.

The embeddings themselves were validated once, when the set was made
(:mod:`relink.embeddings`); option ranges by :class:`relink.retrieval.spec.AuditSpec`.

Pools are given as integers (the pool size N: the truth plus N - 1
distractors) or ``"full"`` (every candidate). An integer N larger than the
candidate count M is an error, unless ``pools_clip`` drops such pools (with a
warning): small cohorts in the book use that. K must not exceed any N.
"""

from __future__ import annotations

import warnings
from typing import Iterable, Sequence

from ..errors import RelinkError

FULL = "full"


def check_choice(values: Iterable[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    values = tuple(values)
    if not values:
        raise RelinkError(f"no {what} given; choose from {', '.join(allowed)}")
    for v in values:
        if v not in allowed:
            raise RelinkError(f"unknown {what} {v!r}; choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(values))


def parse_pools(pools: Iterable, n_candidates: int, pools_clip: bool = False) -> list[int | str]:
    """Validated pools in the order given: ints >= 1 and/or ``"full"``."""
    out: list[int | str] = []
    dropped = []
    for p in pools:
        if isinstance(p, str) and p.strip().lower() == FULL:
            out.append(FULL)
            continue
        try:
            n = int(p)
            if n != float(p):
                raise ValueError
        except (TypeError, ValueError):
            raise RelinkError(f"pool size {p!r} is neither an integer nor 'full'") from None
        if n < 1:
            raise RelinkError(f"pool size N={n} must be at least 1")
        if n > n_candidates:
            if pools_clip:
                dropped.append(n)
                continue
            raise RelinkError(f"pool size N={n} is larger than the candidate set ({n_candidates} candidates); "
                              "use 'full', a smaller N, or pools_clip=True (--pools-clip) to drop such pools")
        out.append(n)
    if dropped:
        listed = ", ".join(map(str, dropped))
        warnings.warn(f"pools larger than the {n_candidates} candidates dropped: {listed}", stacklevel=3)
    out = list(dict.fromkeys(out))
    if not out:
        raise RelinkError("no pool size left to audit")
    return out


def check_ks(ks: Iterable, pools: Sequence[int | str], n_candidates: int) -> list[int]:
    ks_out = []
    for k in ks:
        try:
            k_int = int(k)
        except (TypeError, ValueError):
            raise RelinkError(f"K {k!r} is not an integer") from None
        if k_int < 1:
            raise RelinkError(f"K={k_int} must be at least 1")
        ks_out.append(k_int)
    if not ks_out:
        raise RelinkError("no K given")
    for p in pools:
        n = n_candidates if p == FULL else p
        big = [k for k in ks_out if k > n]
        if big:
            raise RelinkError(f"K={big[0]} exceeds the pool size N={n}" + (" (the full pool)" if p == FULL else ""))
    return sorted(set(ks_out))
