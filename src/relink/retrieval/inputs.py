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

from ..embeddings import l2_normalise
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
        warnings.warn(f"pools larger than the {n_candidates} candidates dropped: {', '.join(map(str, dropped))}", stacklevel=3)
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


def checked_embeddings(image, text, where_image: str = "image", where_text: str = "text") -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm float32 copies of two aligned (n, d) arrays; finite and non-zero rows required."""
    arrays = []
    for arr, where in ((image, where_image), (text, where_text)):
        a = np.asarray(arr)
        if a.ndim != 2:
            raise RelinkError(f"{where}: embeddings must be 2-D (rows, dim), got shape {a.shape}")
        a = a.astype(np.float32, copy=False)
        finite = np.isfinite(a).all(axis=1)
        if not finite.all():
            raise RelinkError(f"{where}: row {int(np.flatnonzero(~finite)[0])} has non-finite values")
        zero = np.linalg.norm(a, axis=1) <= 1e-12
        if zero.any():
            raise RelinkError(f"{where}: row {int(np.flatnonzero(zero)[0])} has zero norm")
        arrays.append(a)
    image, text = arrays
    if image.shape[0] != text.shape[0]:
        raise RelinkError(f"{where_image} has {image.shape[0]} rows but {where_text} has {text.shape[0]} (misaligned)")
    if image.shape[1] != text.shape[1]:
        raise RelinkError(f"{where_image} dim {image.shape[1]} != {where_text} dim {text.shape[1]}")
    if image.shape[0] < 2:
        raise RelinkError(f"{where_image}: an audit needs at least 2 pairs, got {image.shape[0]}")
    return l2_normalise(image), l2_normalise(text)


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
