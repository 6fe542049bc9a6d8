"""Rows of an EmbeddingSet's arrays, read in blocks as fresh float32 copies: the audit's only access to them."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

_FILE_BYTES = 1 << 30  # a raw block larger than this is read in pieces (bounded temporaries)


def norms(block: np.ndarray, sq: np.ndarray | None = None) -> np.ndarray:
    """Row norms (float64), exact also where float32 squares overflow."""
    sq = (np.einsum("ij,ij->i", block, block) if sq is None else sq).astype(np.float64)
    odd = ~np.isfinite(sq)
    if odd.any():
        b = block[odd].astype(np.float64)
        sq[odd] = np.einsum("ij,ij->i", b, b)
    return np.sqrt(sq)


def _unit_block(block: np.ndarray) -> np.ndarray:
    n = norms(block)
    if n.max(initial=0) > 1e30:  # float32 cannot hold the norm itself
        return (block / n[:, None]).astype(np.float32)
    return block / n.astype(np.float32)[:, None]


def unit_rows(block: np.ndarray) -> np.ndarray:
    """Unit-norm float32 copies of the rows of ``block``, each normalised on its own (a row whose norm
    float32 cannot hold is divided alone, so no other row's result depends on its company)."""
    block = np.asarray(block, dtype=np.float32)
    sq = np.einsum("ij,ij->i", block, block)
    huge = np.flatnonzero(~np.isfinite(sq))
    if not len(huge):
        return _unit_block(block)
    out = np.empty_like(block)
    rest = np.setdiff1d(np.arange(len(block)), huge)
    if len(rest):
        out[rest] = _unit_block(block[rest])
    for i in huge:
        out[i] = _unit_block(block[i:i + 1])[0]
    return out


def _npy_layout(path: str) -> tuple[int, tuple[int, ...], np.dtype, bool] | None:
    """(data offset, shape, dtype, fortran_order) from a .npy header; None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            reader = {(1, 0): np.lib.format.read_array_header_1_0,
                      (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if reader is None:
                return None
            shape, fortran, dtype = reader(fh)
            return fh.tell(), tuple(shape), np.dtype(dtype), bool(fortran)
    except (OSError, ValueError):
        return None


def _runs(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts (into ``idx``) and lengths of the runs of consecutive values in ``idx``."""
    if not len(idx):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks]).astype(np.int64)
    return starts, np.diff(np.concatenate([starts, [len(idx)]])).astype(np.int64)


class RowSource:
    """Rows ``rows`` (default: all; increasing positions) of one (n, d) array, read as fresh float32 copies.

    A ``.npy`` file mapped whole is read with ``pread`` into the block being
    filled: touched pages of a memory map count in the resident set until it
    is unmapped. Any other array is indexed as it is. :meth:`read`
    unit-normalises when ``normalise``; :meth:`raw` keeps the stored dtype.
    """

    def __init__(self, array: Any, rows: np.ndarray | None = None, normalise: bool = True):
        self.array = array
        self.normalise = normalise
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.n = array.shape[0] if self.rows is None else len(self.rows)
        self.d = int(array.shape[1])
        self._fd = None
        self._offset = 0
        self._dtype = np.dtype(np.float32)
        filename = getattr(array, "filename", None) if isinstance(array, np.memmap) else None
        layout = _npy_layout(filename) if filename else None
        if layout is not None:
            offset, shape, dtype, fortran = layout
            # the whole file's array, rows contiguous: read the file itself
            if (not fortran and shape == tuple(array.shape) and dtype == array.dtype
                    and getattr(array, "offset", None) == offset and array.flags.c_contiguous):
                self._fd = os.open(filename, os.O_RDONLY)
                self._offset, self._dtype = offset, dtype

    @property
    def file_backed(self) -> bool:
        """Whether rows are read from the file with explicit reads (the RSS stays bounded)."""
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):  # a source dropped without close() still releases its descriptor
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _stored(self, positions: np.ndarray) -> np.ndarray:
        return positions if self.rows is None else self.rows[positions]

    def raw(self, positions) -> np.ndarray:
        """The stored rows at ``positions`` (a slice or integer positions), as stored (dtype kept)."""
        if isinstance(positions, slice):
            if self._fd is None and self.rows is None and positions.step in (None, 1):
                return np.array(self.array[positions])  # one copy of a run of rows
            positions = np.arange(*positions.indices(self.n))
        idx = self._stored(np.asarray(positions, dtype=np.int64))
        if self._fd is None:
            return np.asarray(self.array[idx])
        out = np.empty((len(idx), self.d), dtype=self._dtype)
        row_bytes = self.d * self._dtype.itemsize
        view = memoryview(out.reshape(-1).view(np.uint8))
        starts, lengths = _runs(idx)
        for s, m in zip(starts.tolist(), lengths.tolist()):
            at, end = s * row_bytes, (s + m) * row_bytes
            offset = self._offset + int(idx[s]) * row_bytes
            while at < end:  # a read may return less than asked (large reads, signals)
                got = _pread(self._fd, view[at:min(end, at + _FILE_BYTES)], offset)
                if got <= 0:
                    raise OSError(f"unexpected end of file reading {self.array.filename}")
                at += got
                offset += got
        return out

    def read(self, positions) -> np.ndarray:
        """float32 copies of the rows at ``positions``: unit-norm (:func:`unit_rows`) when ``normalise``."""
        raw = self.raw(positions)
        return unit_rows(raw) if self.normalise else np.ascontiguousarray(raw, dtype=np.float32)


def _pread(fd: int, buffer: memoryview, offset: int) -> int:
    """Read into ``buffer`` from ``offset``; the number of bytes read."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [buffer], offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - platforms without preadv
    data = os.read(fd, len(buffer))
    buffer[:len(data)] = data
    return len(data)
