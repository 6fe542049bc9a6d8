"""Per-query rank counts for every direction, level and kind of negatives (definitions: the package docstring).

:func:`count_ranks` is the engine's entry; :func:`stream_counts` its step
over rows already in work order: one pass over the pairs (:mod:`.pairs`),
products within each patient (:mod:`.patients`) and one blocked pass of
the score product (:mod:`.product`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ..confident import low_threshold, threshold_grid
from ..inputs import DIRECTIONS, LEVELS
from ..memory import Meter, default_memory
from ..scale import Scale
from .pairs import pair_pass
from .patients import count_of, patient_stats
from .product import count_pass
from .rows import Rows, WorkRows, pick_device

CONFIDENT_CELLS = 0.01  # share of all scores the threshold attacker's counted thresholds reach (the rest: bounds)


class Counts(dict):
    """Rank counts keyed by (direction, level, negatives), in work order: work row w is set row ``order[w]``.
    ``confident``: the threshold attacker's counts (:class:`ConfidentCounts`) when asked for, else None;
    ``run``: the plan and timings of the passes (how they ran, not what they counted)."""

    confident: "ConfidentCounts | None" = None
    run: dict = {}
    order: np.ndarray | None = None


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
    """Per-query counts (int64, length n), defined in :mod:`relink.retrieval.engine`."""

    above: np.ndarray
    tied: np.ndarray
    available: np.ndarray
    truth_size: np.ndarray


def _twin_counter(codes: np.ndarray, group: np.ndarray):
    """A function (code, group) -> how many rows carry that embedding code in that group."""
    width = int(group.max(initial=0)) + 1
    count = count_of(codes * width + group)
    return lambda code, grp: count(np.asarray(code) * width + np.asarray(grp))


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
    confident: tuple[int, float] | None = None,
) -> Counts:
    """Rank counts of rows already in work order: ``xs``, ``ys`` (:class:`~.rows.WorkRows` on one device),
    ``patient`` and the grouping codes in that order, every grouping contiguous. ``confident`` = (grid points,
    share of cells binned) also counts the candidates at or above a grid of thresholds."""
    n = len(xs)
    order, edges = sort_groupings(groupings, n)
    if not np.array_equal(order, np.arange(n)):
        raise ValueError("stream_counts needs rows sorted by the groupings (see sort_groupings)")
    _, pat = np.unique(np.asarray(patient), return_inverse=True)
    pat = pat.reshape(-1)
    seg_codes = [np.repeat(np.arange(len(e) - 1), np.diff(e)) for e in edges]
    want_patient = "patient" in levels

    scale = scale or Scale()
    meter = Meter(scale.memory, start=scale.held_from)
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


def count_ranks(rows: Rows, spec, scale: Scale | None = None) -> Counts:
    """The rank counts of ``rows`` (:class:`~.rows.Rows`) for ``spec``'s directions, levels, ``tie_tol`` and
    threshold attacker (an :class:`~relink.retrieval.spec.AuditSpec`), run as ``scale`` says.

    Counts are in work order (``.order`` of the result): the rows sorted so every grouping is contiguous.
    """
    import torch

    scale = scale or Scale()
    if scale.memory is None:
        scale = replace(scale, memory=default_memory())
    order = sort_groupings(rows.groupings, len(rows.patient))[0]
    dev = pick_device(spec.device)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # TF32 would blur the comparisons
    try:
        xs, ys = WorkRows(rows.image, order, dev), WorkRows(rows.text, order, dev)
        counts = stream_counts(xs, ys, np.asarray(rows.patient)[order],
                               [(g, np.asarray(c)[order]) for g, c in rows.groupings], spec.directions, spec.levels,
                               spec.tie_tol, scale, (spec.confident_grid, CONFIDENT_CELLS) if spec.confident else None)
    finally:
        torch.set_float32_matmul_precision(precision)
    counts.order = order
    return counts


def _sample_scores(xs, ys, rows: int = 256, cols: int = 4096) -> np.ndarray:
    """Scores of evenly spaced rows against evenly spaced columns (never a pair itself): where the threshold
    attacker's lowest counted threshold is set. Spaced in the set's own order, not the work order (which
    depends on the pools audited), so the threshold is the same on every process, every run and every choice
    of pools."""
    n = len(xs)
    work_position = np.empty(n, np.int64)
    work_position[xs.order] = np.arange(n)
    r = np.unique(np.linspace(0, n - 1, min(n, rows)).astype(np.int64))
    c = np.unique(np.linspace(0, n - 1, min(n, cols)).astype(np.int64))
    scores = (xs.take(work_position[r]) @ ys.take(work_position[c]).T).cpu().numpy()
    return scores[r[:, None] != c[None, :]]


def _digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(a, dtype=np.int64).tobytes(), digest_size=16).hexdigest()
