"""Truth scores and per-patient statistics, from products within each patient.

Contract. ``x``, ``y``: float32 torch tensors (n, d), row i of each one pair.
``patient`` (n,) integer codes; ``segment_ids``: a list of (n,) integer group
codes (one per hard-negative segmentation); ``x_codes``/``y_codes`` (n,)
integer codes equal exactly for identical embedding rows.

* :func:`truth_scores` gives ``diag[i] = x[i] . y[i]``. Every later step uses
  this one value for the pair itself (the product kernels overwrite their own
  rounding of that cell with it).
* :func:`patient_stats` gives, for each pair i of a patient p with m_p pairs:

  - ``best_row[i] = max_{k in p} S[i, k]`` (the image's best-scoring report of
    its own patient) and ``top_row[i]``, that report's index; ``best_col``,
    ``top_col`` likewise for the report's best-scoring image of its patient
    (S[i, i] counts as diag[i]);
  - ``twin_row[s, i]``: how many of the patient's reports are identical to
    ``top_row[i]`` (itself included) and lie in the query's group of
    segmentation s (s = 0: no restriction); ``twin_col`` likewise;
  - ``in_group[s, i]``: how many of the patient's pairs lie in the query's
    group (s = 0: m_p).

The cost is sum over patients of m_p^2 d multiply-adds. Patients of up to
``_SMALL`` pairs are handled together as one list of within-patient pairs
(one batched product per patient size, statistics by segment reductions);
larger ones by a product per patient in row chunks (their column statistics
are the row statistics of the swapped product).
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


def _small_patients(x, y, diag, order, starts, sizes, seg_np, x_codes, y_codes):
    """Statistics of every patient of at most _SMALL pairs, from one within-patient pair list.

    Patients are taken by size, so one batched product per size gives the
    scores of all their pairs, already in pair-list order (patient, then
    query, then candidate).
    """
    import torch

    small = np.flatnonzero(sizes <= _SMALL)
    small = small[np.argsort(sizes[small], kind="stable")]
    if not len(small):
        return np.zeros(0, np.int64), {}
    st, m = starts[small], sizes[small]
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
        these = slice(lo, lo + c * size)
        block = torch.bmm(xs[these].view(c, size, -1), ys[these].view(c, size, -1).transpose(1, 2))
        v[int(base[which[0]]):int(base[which[0]]) + c * size * size] = block.reshape(-1).cpu().numpy()
    own = i == k
    v[own] = diag.cpu().numpy()[i[own]]  # the pair's own cell is exactly its truth score
    transposed = np.repeat(base[:-1], m * m) + b * pm + a  # the same pairs, column-major per patient
    runs = np.flatnonzero(b == 0)  # each run: one query against its patient's m pairs
    query = i[runs]
    lengths = pm[runs]
    result = {
        "row": _run_stats(v, runs, lengths, k, y_codes, query, seg_np),
        "col": _run_stats(v[transposed], runs, lengths, i[transposed], x_codes, query, seg_np),
    }
    return query, result


def _large_patient(a, b, diag, members, seg, codes, out):
    """Row statistics of one large patient (queries from ``a``), its product taken in row chunks."""
    import torch

    m = len(members)
    idx = torch.as_tensor(members, device=a.device)
    member_codes = codes[idx]
    step = max(1, _BATCH_CELLS // m)
    for r0 in range(0, m, step):
        rows = idx[r0:r0 + step]
        scores = a[rows] @ b[idx].T
        ar = torch.arange(len(rows), device=a.device)
        scores[ar, ar + r0] = diag[rows]  # the pair's own cell is exactly its truth score
        best, arg = scores.max(1)
        top = idx[arg]
        twin = member_codes[None, :] == codes[top][:, None]
        out["best"][rows] = best
        out["top"][rows] = top
        out["twins"][0, rows] = twin.sum(1)
        for s, sg in enumerate(seg, start=1):
            same = sg[rows][:, None] == sg[idx][None, :]
            out["twins"][s, rows] = (twin & same).sum(1)
            out["group"][s, rows] = same.sum(1)


def patient_stats(x, y, diag, patient: np.ndarray, segment_ids: Sequence[np.ndarray] = (),
                  x_codes: np.ndarray | None = None, y_codes: np.ndarray | None = None) -> PatientStats:
    """Best own-patient scores, their candidates and twins, in-group sizes (see module docstring)."""
    import torch

    n = x.shape[0]
    dev = x.device
    n_seg = 1 + len(segment_ids)
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
    query, small = _small_patients(x, y, diag, order, starts, sizes, seg_np, x_codes, y_codes)
    for name, (best, top, twins, group) in small.items():
        out[name]["best"][query], out[name]["top"][query] = best, top
        out[name]["twins"][:, query], out[name]["group"][:, query] = twins, group
    seg = [torch.as_tensor(sg, device=dev) for sg in seg_np]
    for first, m in zip(starts[sizes > _SMALL], sizes[sizes > _SMALL]):
        members = order[first:first + m]
        for name, (a, b, codes) in (("row", (x, y, y_codes)), ("col", (y, x, x_codes))):
            t = {"best": torch.empty(n, dtype=torch.float32, device=dev),
                 "top": torch.empty(n, dtype=torch.int64, device=dev),
                 "twins": torch.zeros((n_seg, n), dtype=torch.int64, device=dev),
                 "group": torch.zeros((n_seg, n), dtype=torch.int64, device=dev)}
            _large_patient(a, b, diag, members, seg, torch.as_tensor(codes, device=dev), t)
            for key in ("best", "top"):
                out[name][key][members] = t[key][members].cpu().numpy()
            for key in ("twins", "group"):
                out[name][key][:, members] = t[key][:, members].cpu().numpy()
    in_group = out["row"]["group"]
    in_group[0] = size
    return PatientStats(out["row"]["best"], out["col"]["best"], out["row"]["top"], out["col"]["top"],
                        out["row"]["twins"], out["col"]["twins"], in_group, size)
