"""Truth scores and per-patient statistics, from products within each patient.

``xs``, ``ys``: the n image and report rows by work position
(:class:`~relink.retrieval.engine.rows.WorkRows`); ``diag`` (n,) float32
truth scores; ``patient`` (n,) integer codes; ``segment_ids``: (n,) group
codes per hard-negative segmentation; ``x_codes``/``y_codes`` (n,) codes
equal exactly for identical rows.

* :func:`truth_scores`: ``diag[i] = x[i] . y[i]``, the one value every later
  step uses for the pair itself.
* :func:`patient_stats`, for each pair i of a patient p with m_p pairs:
  ``best_row[i] = max_{k in p} S[i, k]`` and ``top_row[i]``, that report's
  index (the first on a tie), ``best_col``/``top_col`` likewise for reports
  (S[i, i] counts as diag[i]); ``twin_row[s, i]``: the patient's reports
  identical to ``top_row[i]`` (itself included) in the query's group of
  segmentation s (s = 0: no restriction), ``twin_col`` likewise;
  ``in_group[s, i]``: the patient's pairs in the query's group (s = 0: m_p).

Patients of up to ``_SMALL`` pairs go through batched products of
within-patient pair lists; larger ones through a product per patient in row
and column chunks. Batches are bounded (``_BATCH_ROWS``, ``_BATCH_PAIRS``,
``_MEMBERS``) and fixed by the patients alone, never by a memory budget, so
every run computes the same products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

_BATCH_CELLS = 1 << 22  # score cells per product of a large patient (16 MB of float32)
_SMALL = 64  # patients up to this size go through the pair list
_BATCH_ROWS = 1 << 12  # rows of small patients read per batch (both sides: 16 MB at d = 512)
_BATCH_PAIRS = 1 << 18  # within-patient pairs per batch (about ten int64 arrays of them: 20 MB)
_MEMBERS = 1 << 12  # a large patient's candidates read at once (8 MB at d = 512)


def truth_scores(x, y, chunk: int = 16384):
    """diag[i] = x[i] . y[i] as a float32 tensor: the one value every later step uses for a pair itself."""
    import torch

    parts = [torch.einsum("ij,ij->i", x[a:a + chunk], y[a:a + chunk]) for a in range(0, x.shape[0], chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float32, device=x.device)


@dataclass
class PatientStats:
    best_row: np.ndarray  # float32 (n,)
    best_col: np.ndarray  # float32 (n,)
    top_row: np.ndarray   # int64 (n,) index of the best own-patient report
    top_col: np.ndarray   # int64 (n,) index of the best own-patient image
    twin_row: np.ndarray  # int64 (1 + segmentations, n)
    twin_col: np.ndarray  # int64 (1 + segmentations, n)
    in_group: np.ndarray  # int64 (1 + segmentations, n)
    size: np.ndarray      # int64 (n,) pairs of the query's patient


def _run_stats(vals, runs, lengths, cand, codes, query, seg_np):
    """Best value, its candidate, its twins and in-group sizes for runs of a pair list."""
    n_seg = 1 + len(seg_np)
    best = np.maximum.reduceat(vals, runs)
    at_best = np.where(vals == np.repeat(best, lengths), np.arange(len(vals)), len(vals))
    top = cand[np.minimum.reduceat(at_best, runs)]
    twin = codes[cand] == np.repeat(codes[top], lengths)
    q = np.repeat(query, lengths)
    twins = np.zeros((n_seg, len(runs)), np.int64)
    group = np.zeros((n_seg, len(runs)), np.int64)
    twins[0] = np.add.reduceat(twin.astype(np.int64), runs)
    for s, sg in enumerate(seg_np, start=1):
        same = sg[q] == sg[cand]
        twins[s] = np.add.reduceat((twin & same).astype(np.int64), runs)
        group[s] = np.add.reduceat(same.astype(np.int64), runs)
    return best, top, twins, group


def _small_batch(xs, ys, diag, rows, size, seg_np, x_codes, y_codes, out):
    """Statistics of c patients of ``size`` pairs each, whose rows are ``rows`` (c * size, patient by patient),
    from one batched product (scores in pair-list order: patient, then query, then candidate)."""
    import torch

    c = len(rows) // size
    block = torch.bmm(xs.take(rows).view(c, size, -1), ys.take(rows).view(c, size, -1).transpose(1, 2))
    v = block.reshape(-1).cpu().numpy()
    a = np.tile(np.repeat(np.arange(size), size), c)
    b = np.tile(np.tile(np.arange(size), size), c)
    first = np.repeat(np.arange(c) * size, size * size)
    i, k = rows[first + a], rows[first + b]
    own = i == k
    v[own] = diag[i[own]]  # the pair's own cell is exactly its truth score
    transposed = np.repeat(np.arange(c) * size * size, size * size) + b * size + a  # column-major per patient
    runs = np.arange(0, len(v), size)  # each run: one query against its patient's pairs
    query = i[runs]
    lengths = np.full(len(runs), size)
    for name, (vals, cand, codes) in (("row", (v, k, y_codes)), ("col", (v[transposed], i[transposed], x_codes))):
        best, top, twins, group = _run_stats(vals, runs, lengths, cand, codes, query, seg_np)
        out[name]["best"][query], out[name]["top"][query] = best, top
        out[name]["twins"][:, query], out[name]["group"][:, query] = twins, group


def count_of(keys: np.ndarray):
    """A function: how many entries of ``keys`` equal each of the given values."""
    values, counts = np.unique(keys, return_counts=True)

    def count(query: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(values, query), len(values) - 1)
        return np.where(values[pos] == query, counts[pos], 0)

    return count


def _large_patient(a, b, diag, members, seg_np, codes, out):
    """Row statistics of one large patient (queries read from ``a``, candidates from ``b``; ``members``
    increasing positions), in chunks: a running maximum keeps the first best candidate, as one product would."""
    import torch

    m = len(members)
    width = min(m, _MEMBERS)
    step = max(1, _BATCH_CELLS // width)
    for r0 in range(0, m, step):
        rows = members[r0:r0 + step]
        own = np.arange(r0, r0 + len(rows))  # each query's own place among the members
        q = a.take(rows)
        best = top = None
        for c0 in range(0, m, width):
            scores = q @ b.take(members[c0:c0 + width]).T
            here = np.flatnonzero((own >= c0) & (own < c0 + width))
            if len(here):  # the pair's own cell is exactly its truth score
                dev = scores.device
                scores[torch.as_tensor(here, device=dev), torch.as_tensor(own[here] - c0, device=dev)] = \
                    torch.as_tensor(diag[rows[here]], device=dev)
            vals, arg = scores.max(1)  # the first maximum of each row
            vals, arg = vals.cpu().numpy(), members[c0 + arg.cpu().numpy()]
            if best is None:
                best, top = vals, arg
            else:
                better = vals > best
                best, top = np.where(better, vals, best), np.where(better, arg, top)
        out["best"][rows] = best
        out["top"][rows] = top
    rows = members
    top = out["top"][rows]
    out["twins"][0, rows] = count_of(codes[members])(codes[top])
    width_codes = int(codes.max(initial=0)) + 1
    for s, sg in enumerate(seg_np, start=1):
        # members identical to the query's best candidate, within the query's group: one key per (code, group)
        key = sg[members] * width_codes + codes[members]
        out["twins"][s, rows] = count_of(key)(sg[rows] * width_codes + codes[top])
        out["group"][s, rows] = count_of(sg[members])(sg[rows])


def patient_stats(xs, ys, diag: np.ndarray, patient: np.ndarray, segment_ids: Sequence[np.ndarray] = (),
                  x_codes: np.ndarray | None = None, y_codes: np.ndarray | None = None) -> PatientStats:
    """Best own-patient scores, their candidates and twins, in-group sizes (see module docstring)."""
    n = len(patient)
    n_seg = 1 + len(segment_ids)
    diag = np.asarray(diag, dtype=np.float32)
    x_codes = np.arange(n) if x_codes is None else np.asarray(x_codes, dtype=np.int64)
    y_codes = np.arange(n) if y_codes is None else np.asarray(y_codes, dtype=np.int64)
    seg_np = [np.asarray(sg, dtype=np.int64) for sg in segment_ids]
    order = np.argsort(patient, kind="stable")
    _, starts, sizes = np.unique(patient[order], return_index=True, return_counts=True)
    size = np.empty(n, dtype=np.int64)
    size[order] = np.repeat(sizes, sizes)
    out = {name: {"best": np.empty(n, np.float32), "top": np.empty(n, np.int64),
                  "twins": np.zeros((n_seg, n), np.int64), "group": np.zeros((n_seg, n), np.int64)}
           for name in ("row", "col")}
    small = np.flatnonzero(sizes <= _SMALL)
    for m in np.unique(sizes[small]):
        these = small[sizes[small] == m]  # patients of this size, in patient order
        per = max(1, min(_BATCH_ROWS // int(m), _BATCH_PAIRS // int(m) ** 2))
        for p0 in range(0, len(these), per):
            batch = these[p0:p0 + per]
            rows = order[(starts[batch][:, None] + np.arange(m)[None, :]).reshape(-1)]
            _small_batch(xs, ys, diag, rows, int(m), seg_np, x_codes, y_codes, out)
    for first, m in zip(starts[sizes > _SMALL], sizes[sizes > _SMALL]):
        members = order[first:first + m]
        for name, (a, b, codes) in (("row", (xs, ys, y_codes)), ("col", (ys, xs, x_codes))):
            _large_patient(a, b, diag, members, seg_np, codes, out[name])
    in_group = out["row"]["group"]
    in_group[0] = size
    return PatientStats(out["row"]["best"], out["col"]["best"], out["row"]["top"], out["col"]["top"],
                        out["row"]["twins"], out["col"]["twins"], in_group, size)
