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
counted exactly by hashing embedding rows (:mod:`relink.retrieval.passes`),
and resolved later. Distinct embeddings whose scores differ by less than
``tie_tol`` count as not outranking: the truth gets the benefit of a
difference float32 cannot resolve. ``tie_tol`` must be above 0
(:class:`~relink.retrieval.spec.AuditSpec` refuses 0): with no tolerance a
duplicate of the truth could be counted both as tied and, through rounding,
as outranking it.

Everything comes from streamed passes over the rows (:mod:`relink.retrieval.passes`):
one over the pairs (truth scores, identical rows), products within each
patient (:mod:`relink.retrieval.patients`), and one blocked pass of the score
product (:mod:`relink.retrieval.blocked`) with rows and columns sorted by the
groupings, in slabs of query rows against blocks of candidates sized by a
memory budget, optionally split across processes and resumable
(:func:`relink.retrieval.passes.count_pass`). :func:`stream_counts` takes row
sources (an EmbeddingSet's arrays, read in blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .inputs import DIRECTIONS, LEVELS
from .confident import low_threshold, threshold_grid
from .memory import Meter
from .scale import Scale
from .patients import patient_stats
from .passes import count_pass, identical_rows, pair_pass, pick_device  # noqa: F401 (used by relink.utility)


class Counts(dict):
    """Rank counts keyed by (direction, level, negatives); ``confident`` holds the threshold attacker's counts
    (:class:`ConfidentCounts`) when they were asked for, else None."""

    confident: "ConfidentCounts | None" = None
    run: dict = {}  # the plan and timings of the passes (how they ran, not what they counted)


@dataclass
class ConfidentCounts:
    """What the threshold attacker needs beyond the rank counts (:mod:`relink.retrieval.confident`).

    ``counted``: thresholds counted per query (ascending, from ``counted[0]``); ``low``: points below them;
    ``at_or_above[direction]`` (n, len(counted)) int32: candidates scoring at or above each counted
    threshold (the query's own pair and patient included: they enter only where they lie below the
    threshold); ``truth[(direction, level)]`` (n,) float32: the (best) truth score.
    """

    counted: np.ndarray
    low: np.ndarray
    at_or_above: dict
    truth: dict


@dataclass
class RankCounts:
    """Per-query counts (int64, length n): see the module docstring."""

    above: np.ndarray
    tied: np.ndarray
    available: np.ndarray
    truth_size: np.ndarray


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

    Rows already in such an order keep it (the sort is stable).
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


def stream_counts(
    xs,
    ys,
    patient: np.ndarray,
    groupings: Sequence[tuple[str, np.ndarray]] = (),
    directions: Sequence[str] = DIRECTIONS,
    levels: Sequence[str] = LEVELS,
    tie_tol: float = 1e-6,
    scale: Scale | None = None,
    meter: Meter | None = None,
    confident: tuple[int, float] | None = None,
) -> Counts:
    """Rank counts keyed by (direction, level, negatives), in work order; see the module docstring.

    ``confident`` = (grid points, share of cells binned) also counts, per query, the candidates at or above
    a grid of thresholds (:class:`ConfidentCounts`, in ``.confident`` of the result).

    ``xs``, ``ys``: the image and report rows in work order
    (:class:`~relink.retrieval.stream.WorkRows`, all on one device), with every
    grouping already contiguous in that order; ``patient`` and the grouping
    codes in the same order. ``scale`` (:class:`~relink.retrieval.scale.Scale`)
    says how the passes run, never what they count; ``meter`` is the budget's
    meter when it was started earlier (default: from ``scale.memory``, now).
    The plan and timings of the passes are in ``.run`` of the result.
    """
    n = len(xs)
    order, edges = sort_groupings(groupings, n)
    if not np.array_equal(order, np.arange(n)):
        raise ValueError("stream_counts needs rows sorted by the groupings (see sort_groupings)")
    _, pat = np.unique(np.asarray(patient), return_inverse=True)
    pat = pat.reshape(-1)
    seg_codes = [np.repeat(np.arange(len(e) - 1), np.diff(e)) for e in edges]
    want_patient = "patient" in levels

    scale = scale or Scale()
    meter = meter or Meter(scale.memory, start=scale.held_from)
    pairs = pair_pass(xs, ys, meter, scale.progress, digest=scale.work is not None)
    diag, x_codes, y_codes = pairs.diag, pairs.x_codes, pairs.y_codes
    ps = patient_stats(xs, ys, diag, pat, seg_codes, x_codes, y_codes) if want_patient else None
    thresholds = {}
    for direction, best in (("image_to_report", "best_row"), ("report_to_image", "best_col")):
        if direction not in directions:
            thresholds[direction] = (np.zeros((n, 0), np.float32), np.zeros((n, 0), bool))
        elif not want_patient:
            thresholds[direction] = (diag[:, None], np.ones((n, 1), bool))
        else:
            b = getattr(ps, best)
            # Where the pair itself is its patient's best, the patient threshold is the study one.
            thresholds[direction] = (np.stack([diag, b], 1), np.stack([np.ones(n, bool), b > diag], 1))
    (row_thr, row_on), (col_thr, col_on) = thresholds["image_to_report"], thresholds["report_to_image"]
    key = {"n": n, "d": xs.d, "directions": list(directions), "levels": list(levels), "tie_tol": tie_tol,
           "groupings": [name for name, _ in groupings], "digest": pairs.digest,
           "patients": _digest(pat), "groups": [_digest(e) for e in edges]}
    truths, grid = {}, None
    if confident:
        for direction, best in (("image_to_report", "best_row"), ("report_to_image", "best_col")):
            if direction in directions:
                for level in levels:
                    truths[(direction, level)] = diag if level == "study" else getattr(ps, best)
        pooled = np.concatenate(list(truths.values()))
        t_low = low_threshold(_sample_scores(xs, ys), pooled, confident[1])
        grid, low = threshold_grid(pooled, t_low, confident[0])
    tc = count_pass(xs, ys, diag, (row_thr, row_on), (col_thr, col_on), edges, tie_tol, scale, meter, key, grid)
    for above, on in ((tc.row_above, row_on), (tc.col_above, col_on)):
        if on.shape[1] > 1:
            same = ~on[:, 1]
            above[1][:, same] = above[0][:, same]

    names = ["random"] + [name for name, _ in groupings]
    seg_all = [np.zeros(n, np.int64)] + seg_codes
    group_size = [np.full(n, n, dtype=np.int64)] + [np.repeat(np.diff(e), np.diff(e)) for e in edges]
    one = np.ones(n, dtype=np.int64)
    study_available = [g - 1 for g in group_size]  # shared by both directions
    patient_available = [g - ps.in_group[s] for s, g in enumerate(group_size)] if want_patient else None
    out = Counts()
    out.run = tc.run
    if confident:
        at = {}
        for direction, hist in (("image_to_report", tc.row_hist), ("report_to_image", tc.col_hist)):
            if direction in directions:  # candidates at or above each threshold: suffix sums of the bins, in place
                for g in range(hist.shape[1] - 2, -1, -1):
                    hist[:, g] += hist[:, g + 1]
                at[direction] = hist
        tc.row_hist = tc.col_hist = None
        out.confident = ConfidentCounts(tc.grid, low, at, truths)  # the grid the pass used (thinner to fit memory)
    sides = (("image_to_report", tc.row_above, y_codes), ("report_to_image", tc.col_above, x_codes))
    for direction, above, codes in sides:
        if direction not in directions:
            continue
        for s, neg in enumerate(names):
            twins_in = _twin_counter(codes, seg_all[s])
            if "study" in levels:
                tied = twins_in(codes, seg_all[s]) - 1  # identical to the truth, itself excluded
                out[(direction, "study", neg)] = RankCounts(above[0, s], tied, study_available[s], one)
            if want_patient:
                top = ps.top_row if direction == "image_to_report" else ps.top_col
                twins = ps.twin_row if direction == "image_to_report" else ps.twin_col
                # identical to the patient's best candidate, the patient's own candidates excluded
                tied = np.maximum(twins_in(codes[top], seg_all[s]) - twins[s], 0)
                out[(direction, "patient", neg)] = RankCounts(above[1, s], tied, patient_available[s], ps.size)
    return out


def _sample_scores(xs, ys, rows: int = 256, cols: int = 4096) -> np.ndarray:
    """Scores of evenly spaced rows against evenly spaced columns (never a pair itself): where the threshold
    attacker's lowest counted threshold is set. The same on every process and every run."""
    n = len(xs)
    r = np.unique(np.linspace(0, n - 1, min(n, rows)).astype(np.int64))
    c = np.unique(np.linspace(0, n - 1, min(n, cols)).astype(np.int64))
    scores = (xs.take(r) @ ys.take(c).T).cpu().numpy()
    return scores[r[:, None] != c[None, :]]


def _digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(a, dtype=np.int64).tobytes(), digest_size=16).hexdigest()
