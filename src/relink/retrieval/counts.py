"""Per-query rank counts for every direction, level and kind of negatives.

Contract. Inputs are n pairs: ``image`` and ``text`` (n, d) unit-norm float32
arrays, row i of each belonging together; ``patient`` (n,) integer codes;
``groupings`` an ordered list of ``(negatives_name, codes)`` where each
grouping refines the one before it (pathology-matched groups refine
positive-set groups). The output maps ``(direction, level, negatives)`` to a
:class:`RankCounts` of four int64 arrays of length n, in input order.

Definitions, for the query of pair i (an image for ``image_to_report``, a
report for ``report_to_image``), with S its scores against all n candidates:

* ``study`` level — the truth is candidate i, with score t = S_ii. The
  distractors a pool may draw from (``available``) are the other n - 1
  candidates, or for hard negatives the other members of the query's group.
  ``above`` counts the distractors that outrank the truth, ``tied`` those
  tied with it (below).
* ``patient`` level — the truth set is every candidate of the query's patient
  (``truth_size`` = m_p of them); the one that counts is the best-scoring,
  with score t. The distractors are the candidates of *other* patients
  (n - m_p of them), or for hard negatives the other patients' candidates in
  the query's group; ``above`` and ``tied`` compare them with that best
  candidate. A pool holds all m_p truths and N - 1 distractors, and is a hit
  at K when the best truth is in its top K (see :mod:`relink.retrieval.exact`).

A query's own pair is never a distractor, and the patient's other pairs are
distractors at the study level only.

Outranking and ties. A distractor *outranks* the truth when it scores more
than ``tie_tol`` above it (default 1e-6: the truth's score and the others come
from kernels that round differently, by ~1e-7). It is *tied* with the truth
when its embedding is identical to the truth's (duplicate reports are common
in real cohorts; a collapsed encoder makes everything identical); ties are
counted exactly by hashing embedding rows, and resolved later. Distinct
embeddings whose scores differ by less than ``tie_tol`` count as not
outranking: the truth gets the benefit of a difference float32 cannot
resolve. ``tie_tol`` must be above 0 (:class:`~relink.retrieval.spec.AuditSpec`
refuses 0): with no tolerance a duplicate of the truth could be counted both as
tied and, through rounding, as outranking it.

Everything comes from one blocked pass (:mod:`relink.retrieval.blocked`) with
rows and columns sorted by the groupings, per-patient products
(:mod:`relink.retrieval.patients`) and counts of identical rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .blocked import threshold_counts
from .patients import patient_stats, truth_scores

DIRECTIONS = ("image_to_report", "report_to_image")
LEVELS = ("study", "patient")


@dataclass
class RankCounts:
    """Per-query counts (int64, length n): see the module docstring."""

    above: np.ndarray
    tied: np.ndarray
    available: np.ndarray
    truth_size: np.ndarray


def pick_device(device=None):
    """A torch device: the one asked for, else CUDA when available, else the CPU."""
    import torch

    from ..errors import RelinkError

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise RelinkError(f"device {device!r} is not a torch device (use cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RelinkError(f"device {device!r}: no CUDA device is available here")
    if dev.type not in ("cpu", "cuda"):
        raise RelinkError(f"device {device!r}: the audit runs on cpu or cuda")
    return dev


def identical_rows(a: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(n,) int64 codes, equal exactly when two rows are bitwise identical.

    Rows are hashed (their 32-bit words times random odd constants, summed
    modulo 2**64), and rows sharing a hash are checked against each other;
    only a hash collision between different rows falls back to sorting the
    rows themselves.
    """
    a = np.ascontiguousarray(a, dtype=np.float32)
    n, d = a.shape
    coeffs = np.random.default_rng(20240601).integers(1, 2 ** 62, size=d, dtype=np.uint64) * 2 + 1
    h = np.empty(n, dtype=np.uint64)
    for a0 in range(0, n, chunk):
        h[a0:a0 + chunk] = (a[a0:a0 + chunk].view(np.uint32).astype(np.uint64) * coeffs).sum(axis=1)
    _, first, codes = np.unique(h, return_index=True, return_inverse=True)
    codes = codes.reshape(-1)
    shared = np.flatnonzero(np.bincount(codes)[codes] > 1)
    if len(shared) and not np.array_equal(a[shared], a[first[codes[shared]]]):
        rows = a.view(np.dtype((np.void, 4 * d))).reshape(-1)
        codes = np.unique(rows, return_inverse=True)[1].reshape(-1)
    return codes.astype(np.int64)


def _twin_counter(codes: np.ndarray, group: np.ndarray):
    """A function (code, group) -> how many rows carry that embedding code in that group."""
    width = int(group.max(initial=0)) + 1
    keys, counts = np.unique(codes * width + group, return_counts=True)

    def count(code, grp):
        key = np.asarray(code) * width + np.asarray(grp)
        pos = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
        return np.where(keys[pos] == key, counts[pos], 0)

    return count


def _edges(sorted_codes: np.ndarray) -> np.ndarray:
    change = np.flatnonzero(np.diff(sorted_codes)) + 1
    return np.concatenate([[0], change, [len(sorted_codes)]]).astype(np.int64)


def sort_groupings(groupings: Sequence[tuple[str, np.ndarray]], n: int):
    """An order that makes every grouping a run of contiguous rows, and its edges.

    Rows already in such an order keep it (the sort is stable), so a caller that
    sorts its arrays first spares :func:`rank_counts` a copy of them.
    """
    if not groupings:
        return np.arange(n), []
    keys = [np.asarray(codes) for _, codes in groupings]
    order = np.lexsort(keys[::-1])
    edges = []
    for (name, _), key in zip(groupings, keys):
        e = _edges(key[order])
        if len(e) - 1 != len(np.unique(key)):
            raise ValueError(f"grouping {name!r} does not refine the groupings before it")
        edges.append(e)
    return order, edges


def rank_counts(
    image: np.ndarray,
    text: np.ndarray,
    patient: np.ndarray,
    groupings: Sequence[tuple[str, np.ndarray]] = (),
    directions: Sequence[str] = DIRECTIONS,
    levels: Sequence[str] = LEVELS,
    tie_tol: float = 1e-6,
    device=None,
    block_rows: int | None = None,
    tile_cols: int | None = None,
    progress: bool = False,
    engine: str = "auto",
) -> dict[tuple[str, str, str], RankCounts]:
    """Rank counts keyed by (direction, level, negatives); see the module docstring.

    ``block_rows``, ``tile_cols`` and ``engine`` tune the blocked pass
    (:func:`relink.retrieval.blocked.threshold_counts`); results do not depend on them.
    """
    import torch

    n = image.shape[0]
    dev = pick_device(device)
    order, edges = sort_groupings(groupings, n)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    _, pat = np.unique(np.asarray(patient)[order], return_inverse=True)
    seg_codes = [np.repeat(np.arange(len(e) - 1), np.diff(e)) for e in edges]
    group_size = [np.full(n, n, dtype=np.int64)] + [np.repeat(np.diff(e), np.diff(e)) for e in edges]

    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # TF32 would blur the comparisons
    try:
        presorted = np.array_equal(order, np.arange(n))
        sort = (lambda a: a) if presorted else (lambda a: a[order])  # noqa: E731 (no copy when in order)
        image_s = np.ascontiguousarray(sort(image), dtype=np.float32)
        text_s = np.ascontiguousarray(sort(text), dtype=np.float32)
        x_codes, y_codes = identical_rows(image_s), identical_rows(text_s)
        x = torch.as_tensor(image_s, device=dev)
        y = torch.as_tensor(text_s, device=dev)
        diag = truth_scores(x, y)
        want_patient = "patient" in levels
        stats = patient_stats(x, y, diag, pat, seg_codes, x_codes, y_codes) if want_patient else None
        s_host = diag.cpu().numpy()
        thresholds = {}
        for direction, best in (("image_to_report", "best_row"), ("report_to_image", "best_col")):
            if direction not in directions:
                thresholds[direction] = (np.zeros((n, 0), np.float32), np.zeros((n, 0), bool))
            elif not want_patient:
                thresholds[direction] = (s_host[:, None], np.ones((n, 1), bool))
            else:
                b = getattr(stats, best)
                # Where the pair itself is its patient's best, the patient threshold is the study one.
                thresholds[direction] = (np.stack([s_host, b], 1), np.stack([np.ones(n, bool), b > s_host], 1))
        (row_thr, row_on), (col_thr, col_on) = thresholds["image_to_report"], thresholds["report_to_image"]
        tc = threshold_counts(x, y, diag, row_thr, col_thr, row_on, col_on, edges, tie_tol, block_rows, tile_cols,
                              progress, engine)
    finally:
        torch.set_float32_matmul_precision(precision)
    for above, on in ((tc.row_above, row_on), (tc.col_above, col_on)):
        if on.shape[1] > 1:
            same = ~on[:, 1]
            above[1][:, same] = above[0][:, same]

    names = ["random"] + [name for name, _ in groupings]
    seg_all = [np.zeros(n, np.int64)] + seg_codes
    self_idx = np.arange(n)
    out: dict[tuple[str, str, str], RankCounts] = {}
    sides = (("image_to_report", tc.row_above, y_codes), ("report_to_image", tc.col_above, x_codes))
    for direction, above, codes in sides:
        if direction not in directions:
            continue
        if want_patient:
            top = stats.top_row if direction == "image_to_report" else stats.top_col
            twins = stats.twin_row if direction == "image_to_report" else stats.twin_col
        for s, neg in enumerate(names):
            twins_in = _twin_counter(codes, seg_all[s])
            if "study" in levels:
                tied = twins_in(codes[self_idx], seg_all[s]) - 1  # identical to the truth, itself excluded
                one = np.ones(n, dtype=np.int64)
                out[(direction, "study", neg)] = RankCounts(above[0, s], tied, group_size[s] - 1, one)
            if want_patient:
                # identical to the patient's best candidate, the patient's own candidates excluded
                tied = np.maximum(twins_in(codes[top], seg_all[s]) - twins[s], 0)
                available = group_size[s] - stats.in_group[s]
                out[(direction, "patient", neg)] = RankCounts(above[1, s], tied, available, stats.size)
    back = lambda a: np.ascontiguousarray(a[inverse])  # noqa: E731 (input order)
    return {key: RankCounts(back(rc.above), back(rc.tied), back(rc.available), back(rc.truth_size))
            for key, rc in out.items()}
