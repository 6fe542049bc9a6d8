"""Truth scores and per-patient statistics, from products within each patient.

Contract. ``x``, ``y``: float32 torch tensors (n, d), row i of each one pair.
``patient`` (n,) integer codes; ``segment_ids``: a list of (n,) integer group
codes (one per hard-negative segmentation).

* :func:`truth_scores` gives ``diag[i] = x[i] . y[i]``. Every later step uses
  this one value for the pair itself (the product kernels overwrite their own
  rounding of that cell with it); other cells may differ from it by float
  rounding, which the tie tolerance absorbs.
* :func:`patient_stats` gives, for each pair i with patient p (m_p pairs):

  - ``best_row[i] = max_{k in p} S[i, k]`` (the image's best-scoring report of
    its own patient) and ``best_col[i] = max_{k in p} S[k, i]`` (the report's
    best-scoring image of its own patient), with S[i, i] = diag[i];
  - ``band_row[s, i]``: how many of the patient's reports score within
    ``tie_tol`` of ``best_row[i]`` (the best itself included) and lie in the
    query's group of segmentation s (s = 0: no restriction); ``band_col``
    likewise for reports as queries;
  - ``in_group[s, i]``: how many of the patient's pairs lie in the query's
    group (s = 0: m_p).

The cost is sum over patients of m_p^2 d multiply-adds. Patients of up to
``_SMALL`` pairs are handled together as one list of within-patient pairs
(scores by gathered dot products, statistics by segment reductions); larger
ones by a product per patient, in row chunks (the column statistics are the
row statistics of the swapped product).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

_BATCH_CELLS = 1 << 22  # score cells per product of a large patient (16 MB of float32)
_SMALL = 64  # patients up to this size go through the pair list


def truth_scores(x, y, chunk: int = 16384):
    """diag[i] = x[i] . y[i] as a float32 tensor: the one value every later step uses for a pair itself."""
    import torch

    parts = [torch.einsum("ij,ij->i", x[a:a + chunk], y[a:a + chunk]) for a in range(0, x.shape[0], chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float32, device=x.device)


@dataclass
class PatientStats:
    best_row: np.ndarray  # float32 (n,)
    best_col: np.ndarray  # float32 (n,)
    band_row: np.ndarray  # int64 (1 + segmentations, n)
    band_col: np.ndarray  # int64 (1 + segmentations, n)
    in_group: np.ndarray  # int64 (1 + segmentations, n)
    size: np.ndarray      # int64 (n,) pairs of the query's patient


def _large_patient(x, y, diag, members, seg, tie_tol, out_best, out_band, out_group):
    """Row statistics of one large patient, its product taken in row chunks."""
    import torch

    m = len(members)
    idx = torch.as_tensor(members, device=x.device)
    seg_all = [sg[idx] for sg in seg]
    for r0 in range(0, m, max(1, _BATCH_CELLS // m)):
        rows = idx[r0:r0 + max(1, _BATCH_CELLS // m)]
        scores = x[rows] @ y[idx].T
        ar = torch.arange(len(rows), device=x.device)
        scores[ar, ar + r0] = diag[rows]  # the pair's own cell is exactly its truth score
        best = scores.max(1).values
        near = (scores - best[:, None]).abs() <= tie_tol
        out_best[rows] = best
        out_band[0, rows] = near.sum(1)
        for s, (sg_rows, sg_all) in enumerate(zip((sg[rows] for sg in seg), seg_all), start=1):
            same = sg_rows[:, None] == sg_all[None, :]
            out_band[s, rows] = (near & same).sum(1)
            out_group[s, rows] = same.sum(1)


def _small_patients(x, y, diag, order, starts, sizes, seg_np, tie_tol):
    """Row and column statistics of every patient of at most _SMALL pairs, from one pair list.

    Patients are taken by size, so one batched product per size gives the
    scores of all their within-patient pairs, already in pair-list order
    (patient, then query, then candidate).
    """
    import torch

    n_seg = 1 + len(seg_np)
    small = np.flatnonzero(sizes <= _SMALL)
    small = small[np.argsort(sizes[small], kind="stable")]
    st, m = starts[small], sizes[small]
    if not len(small):
        empty = (np.zeros(0, np.float32), np.zeros((n_seg, 0), np.int64), np.zeros((n_seg, 0), np.int64))
        return np.zeros(0, np.int64), {"row": empty, "col": empty}
    pos = np.concatenate([[0], np.cumsum(m)])
    # rows of the small patients, grouped by patient size: each size is one contiguous block
    rows = order[np.repeat(st, m) + np.arange(int(pos[-1])) - np.repeat(pos[:-1], m)]
    base = np.concatenate([[0], np.cumsum(m * m)])
    pm = np.repeat(m, m * m)
    t = np.arange(int(base[-1])) - np.repeat(base[:-1], m * m)
    a, b = t // pm, t % pm
    first = np.repeat(pos[:-1], m * m)
    i, k = rows[first + a], rows[first + b]
    v = np.empty(len(i), np.float32)
    rows_t = torch.as_tensor(rows, device=x.device)
    xs, ys = x[rows_t], y[rows_t]
    for size in np.unique(m):
        which = np.flatnonzero(m == size)
        lo, c = int(pos[which[0]]), len(which)
        block = torch.bmm(xs[lo:lo + c * size].view(c, size, -1), ys[lo:lo + c * size].view(c, size, -1).transpose(1, 2))
        v[int(base[which[0]]):int(base[which[0]]) + c * size * size] = block.reshape(-1).cpu().numpy()
    own = i == k
    v[own] = diag.cpu().numpy()[i[own]]  # the pair's own cell is exactly its truth score
    transposed = np.repeat(base[:-1], m * m) + b * pm + a  # the same pairs, column-major per patient
    runs = np.flatnonzero(b == 0)  # each run: one query against its patient's m pairs
    result = {}
    for name, vals, q_side, c_side in (("row", v, i, k), ("col", v[transposed], k[transposed], i[transposed])):
        best = np.maximum.reduceat(vals, runs)
        near = np.abs(vals - np.repeat(best, pm[runs])) <= tie_tol
        band = np.zeros((n_seg, len(runs)), np.int64)
        group = np.zeros((n_seg, len(runs)), np.int64)
        band[0] = np.add.reduceat(near.astype(np.int64), runs)
        for s, sg in enumerate(seg_np, start=1):
            same = sg[q_side] == sg[c_side]
            band[s] = np.add.reduceat((near & same).astype(np.int64), runs)
            group[s] = np.add.reduceat(same.astype(np.int64), runs)
        result[name] = (best, band, group)
    return i[runs], result


def patient_stats(x, y, diag, patient: np.ndarray, segment_ids: Sequence[np.ndarray] = (), tie_tol: float = 1e-6) -> PatientStats:
    """Best own-patient scores, their tie bands and in-group sizes (see module docstring)."""
    import torch

    n = x.shape[0]
    dev = x.device
    n_seg = 1 + len(segment_ids)
    seg_np = [np.asarray(sg, dtype=np.int64) for sg in segment_ids]
    seg = [torch.as_tensor(sg, device=dev) for sg in seg_np]
    order = np.argsort(patient, kind="stable")
    _, starts, sizes = np.unique(patient[order], return_index=True, return_counts=True)
    size = np.empty(n, dtype=np.int64)
    size[order] = np.repeat(sizes, sizes)
    best = {name: np.empty(n, np.float32) for name in ("row", "col")}
    band = {name: np.zeros((n_seg, n), np.int64) for name in ("row", "col")}
    in_group = np.zeros((n_seg, n), np.int64)
    query, small = _small_patients(x, y, diag, order, starts, sizes, seg_np, tie_tol)
    for name, (b, bd, grp) in small.items():
        best[name][query] = b
        band[name][:, query] = bd
        in_group[:, query] = grp
    for first, m in zip(starts[sizes > _SMALL], sizes[sizes > _SMALL]):
        members = order[first:first + m]
        for name, (a, b) in (("row", (x, y)), ("col", (y, x))):
            t_best = torch.empty(n, dtype=torch.float32, device=dev)
            t_band = torch.zeros((n_seg, n), dtype=torch.int64, device=dev)
            t_group = torch.zeros((n_seg, n), dtype=torch.int64, device=dev)
            _large_patient(a, b, diag, members, seg, tie_tol, t_best, t_band, t_group)
            best[name][members] = t_best[members].cpu().numpy()
            band[name][:, members] = t_band[:, members].cpu().numpy()
            in_group[:, members] = t_group[:, members].cpu().numpy()
    in_group[0] = size
    return PatientStats(best["row"], best["col"], band["row"], band["col"], in_group, size)
