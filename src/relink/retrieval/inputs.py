"""Checks of audit inputs and options; every failure is one RelinkError line.

Pools are given as integers (the pool size N: the truth plus N - 1
distractors) or ``"full"`` (every candidate). An integer N larger than the
candidate count M is an error, unless ``pools_clip`` drops such pools (with a
warning): small cohorts in the book use that. K must not exceed any N.
"""

from __future__ import annotations

import warnings
from typing import Iterable, Sequence

import numpy as np

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


def _unit_rows(arr, where: str, order: np.ndarray | None = None) -> np.ndarray:
    """A unit-norm float32 copy of (n, d) ``arr``; a non-finite or zero row is an error naming it.

    Zero means a norm of at most 1e-12, as in :func:`relink.embeddings.check_arrays`.
    With ``order`` the copy's rows come in that order (errors still name input rows).
    """
    a = np.asarray(arr)
    if a.ndim != 2:
        raise RelinkError(f"{where}: embeddings must be 2-D (rows, dim), got shape {a.shape}")
    a = a.astype(np.float32, copy=False)
    sq = np.einsum("ij,ij->i", a, a)  # one pass; a NaN or inf anywhere in a row shows up here
    odd = np.flatnonzero(~np.isfinite(sq))
    if len(odd):
        finite = np.isfinite(a[odd]).all(axis=1)
        if not finite.all():
            raise RelinkError(f"{where}: row {int(odd[~finite][0])} has non-finite values")
    sq = sq.astype(np.float64)
    if len(odd):  # squares that overflowed float32
        sq[odd] = np.einsum("ij,ij->i", a[odd].astype(np.float64), a[odd].astype(np.float64))
    norms = np.sqrt(sq)
    zero = norms <= 1e-12
    if zero.any():
        raise RelinkError(f"{where}: row {int(np.flatnonzero(zero)[0])} has zero norm")
    if order is not None:
        a, norms = a[order], norms[order]
    if norms.max() > 1e30:  # float32 cannot hold the norm itself
        return (a / norms[:, None]).astype(np.float32)
    out = a if order is not None else np.empty_like(a)  # a fresh copy either way, divided in place
    np.divide(a, norms.astype(np.float32)[:, None], out=out)
    return out


def check_shapes(image, text, where_image: str = "image", where_text: str = "text") -> int:
    """Both arrays 2-D, aligned row for row, same dimension, at least 2 pairs; returns n."""
    for arr, where in ((image, where_image), (text, where_text)):
        if len(np.shape(arr)) != 2:
            raise RelinkError(f"{where}: embeddings must be 2-D (rows, dim), got shape {np.shape(arr)}")
    (ni, di), (nt, dt) = np.shape(image), np.shape(text)
    if ni != nt:
        raise RelinkError(f"{where_image} has {ni} rows but {where_text} has {nt} (misaligned)")
    if di != dt:
        raise RelinkError(f"{where_image} dim {di} != {where_text} dim {dt}")
    if ni < 2:
        raise RelinkError(f"{where_image}: an audit needs at least 2 pairs, got {ni}")
    return ni


def checked_embeddings(image, text, where_image: str = "image", where_text: str = "text",
                       order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm float32 copies of two aligned (n, d) arrays (rows in ``order`` if given); finite, non-zero rows."""
    check_shapes(image, text, where_image, where_text)
    return _unit_rows(image, where_image, order), _unit_rows(text, where_text, order)


def checked_patients(patient_ids, n: int, where: str = "patient_ids") -> np.ndarray:
    """Patient ids as strings, one per pair, none missing."""
    ids = np.asarray(patient_ids, dtype=object)
    if ids.shape != (n,):
        raise RelinkError(f"{where}: expected {n} patient ids (one per pair), got shape {ids.shape}")
    missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) or str(v) == "" for v in ids])
    if missing.any():
        raise RelinkError(f"{where}: row {int(np.flatnonzero(missing)[0])} has no patient_id")
    return ids.astype(str)


def checked_labels(labels, n: int, where: str = "labels") -> np.ndarray | None:
    if labels is None:
        return None
    arr = np.asarray(labels, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise RelinkError(f"{where}: expected ({n}, 14) labels, got shape {arr.shape}")
    bad = ~(np.isnan(arr) | np.isin(arr, (-1.0, 0.0, 1.0)))
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise RelinkError(f"{where}: row {i}, label column {j} holds {float(arr[i, j])} (allowed: 1, 0, -1, missing)")
    return arr
