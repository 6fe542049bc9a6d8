"""Checks of audit options against the data; every failure is one RelinkError line.

The embeddings themselves were validated once, when the set was made
(:mod:`relink.embeddings`); option ranges by :class:`relink.retrieval.spec.AuditSpec`.

Pools are given as integers (the pool size N: the truth plus N - 1
distractors) or ``"full"`` (every candidate). An integer N larger than the
candidate count M is an error (named by its flag, ``--pools``), unless ``--pools-clip`` drops such pools: small
cohorts in the book use that. The dropped sizes are returned, not warned
about, so that the caller can say so once, as a sentence (the audit records
them in its settings as ``pools_dropped``). K must not exceed any N.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import RelinkError

# The vocabularies of the audit's options live here, in a module that imports nothing heavy, so that the
# command line builds its parser without loading torch, pandas or scipy.
FULL = "full"
DIRECTIONS = ("image_to_report", "report_to_image")
LEVELS = ("study", "patient")
TIES = ("random", "pessimistic", "optimistic")


def fit_pools(pools: Sequence[int | str], n_candidates: int, pools_clip: bool = False) -> tuple[list[int | str], list[int]]:
    """The spec's pools (ints >= 1 and/or ``"full"``, parsed by :class:`~relink.retrieval.spec.AuditSpec`)
    that ``n_candidates`` can fill, in order, and the sizes ``pools_clip`` dropped."""
    out = [p for p in pools if p == FULL or p <= n_candidates]
    dropped = [p for p in pools if p != FULL and p > n_candidates]
    if dropped and not pools_clip:
        n = dropped[0]
        raise RelinkError(f"pool size N={n} is larger than the candidate set ({n_candidates} candidates); "
                          "use 'full', a smaller N, or --pools-clip to drop such pools")
    if not out:
        listed = ", ".join(map(str, dropped))
        raise RelinkError(f"no pool size left to audit: every N ({listed}) is larger than the candidate set "
                          f"({n_candidates} candidates); add 'full' or a smaller N")
    return out, dropped


def check_ks(ks: Sequence[int], pools: Sequence[int | str], n_candidates: int) -> list[int]:
    """The spec's K values (ints >= 1), refused when one exceeds a pool size."""
    for p in pools:
        n = n_candidates if p == FULL else p
        big = [k for k in ks if k > n]
        if big:
            raise RelinkError(f"K={big[0]} exceeds the pool size N={n}" + (" (the full pool)" if p == FULL else ""))
    return sorted(set(ks))
