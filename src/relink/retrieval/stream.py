"""Rows of an embedding array, read in blocks and unit-normalised on the way in: the audit's only access to them.

Contract. A :class:`RowSource` stands for one (n, d) array of an
EmbeddingSet (``image`` or ``text``), optionally restricted to some of its
rows (``rows``: increasing positions, e.g. one split). :meth:`RowSource.read`
returns fresh float32 copies of the rows at any positions, in the order
asked, unit-normalised (``normalise=True``, what the audit needs) or as
stored; :meth:`RowSource.raw` keeps the stored dtype. Nothing else of the
array is held: the audit's memory is bounded by the blocks it asks for.
:class:`WorkRows` reads a source in the audit's work order, onto a torch
device.

How the rows are read:

* an array memory-mapped from a ``.npy`` file (what :func:`relink.embeddings.load`
  gives) is read with explicit reads (``pread``) at the file's data offset
  into the block being filled, one read per run of consecutive rows. Pages
  of a memory map that have been touched count in the process's resident
  set until it is unmapped, so reading through the map would grow the RSS
  to the whole file; explicit reads leave the file in the operating
  system's page cache only (a second pass is still a memory copy);
* any other array (made in code, or a map this module cannot read directly)
  is indexed as it is.

Normalisation is :func:`unit_rows`: each row exactly as
:meth:`relink.embeddings.EmbeddingSet.unit` normalises it, and each row on its
own, so a row's unit vector never depends on which block it was read in.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..embeddings import _unit_block

_FILE_BYTES = 1 << 30  # a raw block larger than this is read in pieces (bounded temporaries)


def unit_rows(block: np.ndarray) -> np.ndarray:
    """Unit-norm float32 copies of the rows of ``block``, each normalised on its own.

    :func:`relink.embeddings._unit_block` divides a whole block in float64
    when one of its rows has a norm float32 cannot hold (above ~1.8e19); such
    rows are normalised one at a time here, so that no other row's result
    depends on their company.
    """
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
    """Rows ``rows`` (default: all) of one (n, d) array; see the module docstring."""

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


class WorkRows:
    """A :class:`RowSource` read in work order (work row w is source row ``order[w]``), onto ``device``."""

    def __init__(self, source: RowSource, order: np.ndarray, device):
        self.source = source
        self.order = np.asarray(order, dtype=np.int64)
        self.identity = bool(np.array_equal(self.order, np.arange(len(self.order))))
        self.device = device
        self.d = source.d

    def __len__(self) -> int:
        return len(self.order)

    def numpy(self, positions) -> np.ndarray:
        """float32 rows at work ``positions`` (a slice or integer positions), on the host."""
        if isinstance(positions, slice) and self.identity:
            return self.source.read(positions)
        return self.source.read(self.order[positions])

    def take(self, positions):
        """The rows at work ``positions`` as a float32 tensor on the device."""
        import torch

        return torch.as_tensor(self.numpy(positions), device=self.device)


def _pread(fd: int, buffer: memoryview, offset: int) -> int:
    """Read into ``buffer`` from ``offset``; the number of bytes read."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [buffer], offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - platforms without preadv
    data = os.read(fd, len(buffer))
    buffer[:len(data)] = data
    return len(data)


class Validated:
    """What :func:`relink.embeddings.check_arrays` reads of an array, through a :class:`RowSource`.

    ``check_arrays(n, {name: Validated(array)}, where)`` makes the one
    validation pass of a memory-mapped set with explicit reads, so checking
    a set does not grow the resident set to the size of its files.
    """

    def __init__(self, array: Any):
        self.array = array
        self.shape = tuple(array.shape)
        self.ndim = len(self.shape)
        self._source: RowSource | None = None

    def __getitem__(self, rows):
        if self.ndim != 2:  # check_arrays refuses such an array before reading it
            return np.asarray(self.array[rows])
        if self._source is None:
            self._source = RowSource(self.array)
        return self._source.raw(rows)


def validate(es, block_bytes: int = 8 << 20) -> None:
    """The one value check of a set loaded with ``check_values=False``, in bounded memory.

    :func:`relink.embeddings.check_arrays` itself (the same checks, the same
    messages naming file and row), reading each array through explicit
    reads (:class:`Validated`) in blocks of about ``block_bytes``.
    """
    from ..embeddings import ARRAYS, check_arrays

    arrays = {name: getattr(es, name) for name in ARRAYS}
    d = max((a.shape[1] for a in arrays.values() if a is not None and a.ndim == 2), default=1)
    check_arrays(len(es.rows), {k: None if a is None else Validated(a) for k, a in arrays.items()}, es.where,
                 block_rows=max(1, block_bytes // (4 * d)))
