"""Truth scores and per-patient statistics, from products within each patient.

Contract. ``x``, ``y``: float32 torch tensors (n, d), row i of each one pair.
``patient`` (n,) integer codes; ``segment_ids``: a list of (n,) integer group
codes (one per hard-negative segmentation).

* :func:`truth_scores` gives ``diag[i] = x[i] . y[i]``, accumulated in float64
  and rounded to float32 once, so its value does not depend on how a product
  kernel blocks the sum. Every later comparison uses this value for the pair
  itself.
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

The cost is sum over patients of m_p^2 d multiply-adds: patients are bucketed
by size and multiplied as batches; a very large patient is taken in row
chunks (its column statistics are the row statistics of the swapped product).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

_BATCH_CELLS = 1 << 22  # score cells per batched product (16 MB of float32)


def truth_scores(x, y, chunk: int = 16384):
    """diag[i] = x[i] . y[i] summed in float64, returned as a float32 tensor."""
    import torch

    parts = [(x[a:a + chunk].double() * y[a:a + chunk].double()).sum(1).float() for a in range(0, x.shape[0], chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float32, device=x.device)


@dataclass
class PatientStats:
    best_row: np.ndarray  # float32 (n,)
    best_col: np.ndarray  # float32 (n,)
    band_row: np.ndarray  # int64 (1 + segmentations, n)
    band_col: np.ndarray  # int64 (1 + segmentations, n)
    in_group: np.ndarray  # int64 (1 + segmentations, n)
    size: np.ndarray      # int64 (n,) pairs of the query's patient


def _stats_of_batch(scores, seg_codes, tie_tol):
    """Row statistics of a (batch, rows, cols) score stack; seg_codes (S, batch, rows|cols)."""
    best = scores.max(2).values
    near = (scores - best[:, :, None]).abs() <= tie_tol
    bands, groups = [near.sum(2)], [None]
    for rows_code, cols_code in seg_codes:
        same = rows_code[:, :, None] == cols_code[:, None, :]
        bands.append((near & same).sum(2))
        groups.append(same.sum(2))
    return best, bands, groups


def _rows_of_patients(x, y, diag, members, seg, tie_tol, out_best, out_band, out_group, row_chunk):
    """Fill row statistics for the pairs listed in ``members`` (batch, m): one patient per row of it."""
    import torch

    b, m = members.shape
    idx = torch.as_tensor(members, device=x.device)
    for r0 in range(0, m, row_chunk):
        r1 = min(m, r0 + row_chunk)
        rows = idx[:, r0:r1]
        scores = torch.bmm(x[rows], y[idx].transpose(1, 2))
        # The pair's own cell carries exactly the truth score every other step uses.
        ar = torch.arange(r0, r1, device=x.device)
        scores[:, ar - r0, ar] = diag[rows]
        seg_codes = [(s[rows], s[idx]) for s in seg]
        best, bands, groups = _stats_of_batch(scores, seg_codes, tie_tol)
        flat = rows.reshape(-1)
        out_best[flat] = best.reshape(-1)
        for s, band in enumerate(bands):
            out_band[s, flat] = band.reshape(-1).long()
        for s, grp in enumerate(groups[1:], start=1):
            out_group[s, flat] = grp.reshape(-1).long()


def patient_stats(x, y, diag, patient: np.ndarray, segment_ids: Sequence[np.ndarray] = (), tie_tol: float = 1e-6) -> PatientStats:
    """Best own-patient scores, their tie bands and in-group sizes (see module docstring)."""
    import torch

    n = x.shape[0]
    dev = x.device
    n_seg = 1 + len(segment_ids)
    seg = [torch.as_tensor(np.asarray(s, dtype=np.int64), device=dev) for s in segment_ids]
    order = np.argsort(patient, kind="stable")
    _, starts, sizes = np.unique(patient[order], return_index=True, return_counts=True)
    size = np.empty(n, dtype=np.int64)
    size[order] = np.repeat(sizes, sizes)
    result = {}
    for name, (a, b) in (("row", (x, y)), ("col", (y, x))):
        best = torch.empty(n, dtype=torch.float32, device=dev)
        band = torch.zeros((n_seg, n), dtype=torch.int64, device=dev)
        group = torch.zeros((n_seg, n), dtype=torch.int64, device=dev)
        for m in np.unique(sizes):
            firsts = starts[sizes == m]
            members = order[firsts[:, None] + np.arange(m)[None, :]]
            per_batch = max(1, _BATCH_CELLS // (m * m))
            row_chunk = m if m * m <= _BATCH_CELLS else max(1, _BATCH_CELLS // m)
            for p0 in range(0, len(members), per_batch):
                _rows_of_patients(a, b, diag, members[p0:p0 + per_batch], seg, tie_tol, best, band, group, row_chunk)
        result[name] = (best.cpu().numpy(), band.cpu().numpy())
        in_group = group.cpu().numpy()
    in_group[0] = size
    return PatientStats(result["row"][0], result["col"][0], result["row"][1], result["col"][1], in_group, size)
