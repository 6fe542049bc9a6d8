"""One pass over the pairs: truth scores, codes of identical rows and a digest of every row read.

Rows are hashed block by block (32-bit words times random odd constants,
summed modulo 2**64); rows sharing a hash are read again and compared, so
identical rows get equal codes exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..memory import Meter
from .patients import truth_scores

_DIAG_GRID = 16384  # truth scores are computed in these chunks (as one in-core einsum call per chunk would)
_COEFFS: dict[int, np.ndarray] = {}


def _hash_rows(a: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """(k,) uint64: each row's 32-bit words times random odd constants, summed modulo 2**64."""
    d = a.shape[1]
    if d not in _COEFFS:
        _COEFFS[d] = np.random.default_rng(20240601).integers(1, 2 ** 62, size=d, dtype=np.uint64) * 2 + 1
    coeffs = _COEFFS[d]
    words = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    h = np.empty(len(a), dtype=np.uint64)
    for a0 in range(0, len(a), chunk):
        h[a0:a0 + chunk] = (words[a0:a0 + chunk].astype(np.uint64) * coeffs).sum(axis=1)
    return h


def _codes(h: np.ndarray, read: Callable[[np.ndarray], np.ndarray], chunk: int) -> np.ndarray:
    """(n,) int64 codes from row hashes ``h``: rows sharing a hash are read again (``read(positions)``,
    ``chunk`` at a time) and compared with the first row of their hash; a collision splits the hash's rows."""
    _, first, codes = np.unique(h, return_index=True, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    shared = np.flatnonzero(np.bincount(codes)[codes] > 1)
    bad = []
    for a in range(0, len(shared), chunk):
        rows = shared[a:a + chunk]
        differ = (read(rows) != read(first[codes[rows]])).any(axis=1)
        bad.extend(np.unique(codes[rows[differ]]).tolist())
    nxt = int(codes.max(initial=-1)) + 1
    for code in bad:  # a hash collision: split the bucket by the rows themselves
        members = np.flatnonzero(codes == code)
        block = np.ascontiguousarray(read(members))
        sub = np.unique(block.view(np.dtype((np.void, block.dtype.itemsize * block.shape[1]))).reshape(-1),
                        return_inverse=True)[1].reshape(-1)
        codes[members] = np.where(sub == 0, code, nxt + sub - 1)
        nxt += int(sub.max(initial=0))
    return codes


def identical_rows(a: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(n,) int64 codes of an in-memory array, equal exactly when two rows are bitwise identical."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    return _codes(_hash_rows(a), lambda idx: a[idx], chunk)


@dataclass
class Pairs:
    diag: np.ndarray      # float32 (n,) truth scores
    x_codes: np.ndarray   # int64 (n,) identical image rows
    y_codes: np.ndarray   # int64 (n,) identical report rows
    digest: str | None    # of every row read, in work order (with ``digest=True``)


def _pieces(n: int, piece: int):
    """Row ranges of at most ``piece`` rows inside the chunks of :data:`_DIAG_GRID` rows; never a single row
    where the chunk has more (a one-row product rounds differently)."""
    for g0 in range(0, n, _DIAG_GRID):
        g1 = min(n, g0 + _DIAG_GRID)
        bounds = list(range(g0, g1, piece)) + [g1]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
            del bounds[-2]
        yield from zip(bounds[:-1], bounds[1:])


def _read_rows(d: int, read_bytes: int) -> int:
    """Rows read at once: a power of two (so pieces tile the truth-score chunks), about ``read_bytes``."""
    rows = max(2, read_bytes // (4 * d))
    return min(_DIAG_GRID, 1 << (rows.bit_length() - 1))


def pair_pass(xs, ys, meter: Meter | None = None, progress: bool = False, digest: bool = False) -> Pairs:
    """Truth scores, identical-row codes and (optionally) a digest, from one pass over the pairs."""
    import torch
    from tqdm.auto import tqdm

    n = len(xs)
    piece = _read_rows(xs.d, (meter or Meter(None)).read_bytes())
    diag = np.empty(n, dtype=np.float32)
    hx, hy = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
    # one hash per side, so that the digest does not depend on the size of the pieces read
    h = (hashlib.blake2b(digest_size=16), hashlib.blake2b(digest_size=16)) if digest else None
    for a, b in tqdm(list(_pieces(n, piece)), desc="pairs", unit="block", disable=None if progress else True):
        x, y = xs.numpy(slice(a, b)), ys.numpy(slice(a, b))
        diag[a:b] = truth_scores(torch.as_tensor(x, device=xs.device), torch.as_tensor(y, device=ys.device)).cpu()
        hx[a:b], hy[a:b] = _hash_rows(x), _hash_rows(y)
        if h is not None:
            h[0].update(x)
            h[1].update(y)
    return Pairs(diag, _codes(hx, xs.numpy, piece), _codes(hy, ys.numpy, piece),
                 h[0].hexdigest() + h[1].hexdigest() if h else None)
