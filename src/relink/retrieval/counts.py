"""Per-query rank counts for every direction, level and kind of negatives.

Contract. Inputs are n pairs: ``image`` and ``text`` (n, d) unit-norm float32
arrays, row i of each belonging together; ``patient`` (n,) integer codes;
``groupings`` an ordered list of ``(negatives_name, codes)`` where each
grouping refines the one before it (pathology-matched groups refine
positive-set groups). The output maps ``(direction, level, negatives)`` to a
:class:`RankCounts` of four int64 arrays of length n, in input order.

Definitions, for the query of pair i (an image for ``image_to_report``, a
report for ``report_to_image``), with S its scores against all n candidates
and ``tie_tol`` the tie tolerance:

* ``study`` level — the truth is candidate i, with score t = S_ii. The
  distractors a pool may draw from (``available``) are the other n - 1
  candidates, or for hard negatives the other members of the query's group.
  ``above`` counts distractors scoring > t + tie_tol; ``tied`` those within
  tie_tol of t.
* ``patient`` level — the truth set is every candidate of the query's patient
  (``truth_size`` = m_p of them), with score t = the best of them. The
  distractors are the candidates of *other* patients (n - m_p of them), or for
  hard negatives the other patients' candidates in the query's group.
  ``above`` and ``tied`` compare them with that best score.

A query's own pair is never a distractor, and the patient's other pairs are
distractors at the study level only.

Ties. A distractor is *tied* with the truth when their scores differ by at
most ``tie_tol`` (default 1e-6, about eight float32 steps at 1): identical
embeddings (duplicate reports are common in real cohorts) always are, and so
are scores closer than float32 products can tell apart, since the kernels
that compute the truth and the other scores round differently by ~1e-7.
``tie_tol=0`` compares exactly and is then sensitive to that rounding. How ties are resolved (random order,
pessimistic, optimistic) is decided later, in :mod:`relink.retrieval.exact`.

Everything comes from one blocked pass (:mod:`relink.retrieval.blocked`) with
rows and columns sorted by the groupings, plus per-patient products
(:mod:`relink.retrieval.patients`).
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


def _edges(sorted_codes: np.ndarray) -> np.ndarray:
    change = np.flatnonzero(np.diff(sorted_codes)) + 1
    return np.concatenate([[0], change, [len(sorted_codes)]]).astype(np.int64)


def _sort_groupings(groupings: Sequence[tuple[str, np.ndarray]], n: int):
    """An order that makes every grouping a run of contiguous rows, and its edges."""
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
    order, edges = _sort_groupings(groupings, n)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    _, pat = np.unique(np.asarray(patient)[order], return_inverse=True)
    seg_codes = [np.repeat(np.arange(len(e) - 1), np.diff(e)) for e in edges]
    group_size = [np.full(n, n, dtype=np.int64)] + [np.repeat(np.diff(e), np.diff(e)) for e in edges]

    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # TF32 would blur the comparisons
    try:
        x = torch.as_tensor(np.ascontiguousarray(image[order], dtype=np.float32), device=dev)
        y = torch.as_tensor(np.ascontiguousarray(text[order], dtype=np.float32), device=dev)
        diag = truth_scores(x, y)
        want_patient = "patient" in levels
        stats = patient_stats(x, y, diag, pat, seg_codes, tie_tol) if want_patient else None
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
    for above, atleast, on in ((tc.row_above, tc.row_atleast, row_on), (tc.col_above, tc.col_atleast, col_on)):
        if on.shape[1] > 1:
            same = ~on[:, 1]
            above[1][:, same] = above[0][:, same]
            atleast[1][:, same] = atleast[0][:, same]

    names = ["random"] + [name for name, _ in groupings]
    out: dict[tuple[str, str, str], RankCounts] = {}
    for direction, above, atleast in (("image_to_report", tc.row_above, tc.row_atleast),
                                      ("report_to_image", tc.col_above, tc.col_atleast)):
        if direction not in directions:
            continue
        band = None if stats is None else (stats.band_row if direction == "image_to_report" else stats.band_col)
        for s, neg in enumerate(names):
            # study: the pair itself sits at its threshold, inside the band.
            study = RankCounts(above[0, s], atleast[0, s] - above[0, s] - 1, group_size[s] - 1, np.ones(n, dtype=np.int64))
            if "study" in levels:
                out[(direction, "study", neg)] = study
            if want_patient:
                tied = np.maximum(atleast[1, s] - above[1, s] - band[s], 0)
                out[(direction, "patient", neg)] = RankCounts(above[1, s], tied, group_size[s] - stats.in_group[s], stats.size)
    return {key: RankCounts(*(np.ascontiguousarray(a[inverse]) for a in (rc.above, rc.tied, rc.available, rc.truth_size)))
            for key, rc in out.items()}
