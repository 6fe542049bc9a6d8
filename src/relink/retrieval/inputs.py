"""Checks of audit options against the data; every failure is one RelinkError line.

The embeddings themselves were validated once, when the set was made
(:mod:`relink.embeddings`); option ranges by :class:`relink.retrieval.spec.AuditSpec`.

Pools are given as integers (the pool size N: the truth plus N - 1
distractors) or ``"full"`` (every candidate). An integer N larger than the
candidate count M is an error, unless ``pools_clip`` drops such pools: small
cohorts in the book use that. The dropped sizes are returned, not warned
about, so that the caller can say so once, as a sentence (the audit records
them in its settings as ``pools_dropped``). K must not exceed any N.

Values are shown as a user typed them (:func:`relink.options.show`), never as
a numpy repr.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ..errors import RelinkError
from ..options import show

FULL = "full"


def check_choice(values: Iterable[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    values = tuple(values)
    if not values:
        raise RelinkError(f"no {what} given; choose from {', '.join(allowed)}")
    for v in values:
        if v not in allowed:
            raise RelinkError(f"unknown {what} {show(v)!r}; choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(values))


def parse_pools(pools: Iterable, n_candidates: int, pools_clip: bool = False) -> tuple[list[int | str], list[int]]:
    """Validated pools in the order given (ints >= 1 and/or ``"full"``), and the sizes ``pools_clip`` dropped."""
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
            raise RelinkError(f"pool size {show(p)!r} is neither an integer nor 'full'") from None
        if n < 1:
            raise RelinkError(f"pool size N={n} must be at least 1")
        if n > n_candidates:
            if pools_clip:
                dropped.append(n)
                continue
            raise RelinkError(f"pool size N={n} is larger than the candidate set ({n_candidates} candidates); "
                              "use 'full', a smaller N, or pools_clip=True (--pools-clip) to drop such pools")
        out.append(n)
    out = list(dict.fromkeys(out))
    if not out:
        listed = ", ".join(map(str, dropped))
        raise RelinkError(f"no pool size left to audit: every N ({listed}) is larger than the candidate set "
                          f"({n_candidates} candidates); add 'full' or a smaller N")
    return out, list(dict.fromkeys(dropped))


def check_ks(ks: Iterable, pools: Sequence[int | str], n_candidates: int) -> list[int]:
    ks_out = []
    for k in ks:
        try:
            k_int = int(k)
        except (TypeError, ValueError):
            raise RelinkError(f"K {show(k)!r} is not an integer") from None
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
