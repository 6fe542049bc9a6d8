"""Where the risk concentrates: study-level Recall@1 lift by group (label groups, view, studies per patient) and a
rank histogram, aggregated under a minimum cell.

Disclosure control: no identifier and no report text is ever shown, and no cell holds fewer than ``min_cell``
pairs or ``min_cell`` patients. A partition's small cells are *merged* with their neighbours (so that no
suppressed count can be recovered by subtraction from the total); an overlapping group is *suppressed* when it,
or its complement, is smaller than the minimum. The page says which was done.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..labels import CHEXPERT_LABELS
from ..retrieval.audit import QueryValues
from ..retrieval.intervals import cluster_sums, mean_interval
from ..retrieval.matching import label_groups
from .columns import pick, ranks

RARE_PREVALENCE = 0.05
UNCOMMON_SHARE = 0.01
FINDINGS = tuple(c for c in CHEXPERT_LABELS if c not in ("No Finding", "Support Devices"))


class Cells:
    """Counts pairs and patients of masks over the audited rows."""

    def __init__(self, patient: np.ndarray):
        self.codes = np.unique(np.asarray(patient).astype(str), return_inverse=True)[1].reshape(-1)

    def size(self, mask: np.ndarray) -> int:
        """The smaller of the pair and patient counts: the count disclosure control applies to."""
        return int(min(mask.sum(), len(np.unique(self.codes[mask])))) if mask.any() else 0


def merge_ordered(cells: Sequence[tuple[str, np.ndarray]], size: Callable[[np.ndarray], int], min_cell: int,
                  join: Callable[[list[str]], str]) -> tuple[list[tuple[str, np.ndarray]], int]:
    """Adjacent cells merged until each reaches ``min_cell`` (a short tail joins the cell before it; nothing when
    even the union is too small), and how many merges were made."""
    out: list[tuple[list[str], np.ndarray]] = []
    names: list[str] = []
    acc = None
    merges = 0
    for name, mask in cells:  # empty cells merge like small ones, so ranges stay contiguous
        names.append(name)
        acc = mask.copy() if acc is None else acc | mask
        if size(acc) >= min_cell:
            merges += len(names) - 1
            out.append((names, acc))
            names, acc = [], None
    if acc is not None:
        if not out:
            return [], merges
        last_names, last = out.pop()
        merges += len(names)
        out.append((last_names + names, last | acc))
    return [(join(n), m) for n, m in out], merges


def _range_join(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    first, last = names[0].split("\u2013")[0], names[-1].split("\u2013")[-1]
    return f"{first}\u2013{last}"


def label_masks(labels: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """(name, what it means, mask) of each label group; [] when the set carries no labels."""
    if labels.size == 0 or np.isnan(labels).all():
        return []
    col = {name: j for j, name in enumerate(CHEXPERT_LABELS)}
    labelled = ~np.isnan(labels).all(axis=1)  # a row with no label value belongs to no label group
    pos = labels == 1
    finding_cols = [col[c] for c in FINDINGS]
    prevalence = pos[labelled][:, finding_cols].mean(axis=0)
    rare = [j for j, p in zip(finding_cols, prevalence) if 0 < p < RARE_PREVALENCE]
    codes = label_groups(labels)["pathology_matched"]
    share = np.bincount(codes[labelled], minlength=codes.max() + 1)[codes] / labelled.sum()
    return [
        ("no finding", "No Finding labelled positive", pos[:, col["No Finding"]]),
        ("support devices", "Support Devices labelled positive", pos[:, col["Support Devices"]]),
        ("any finding", "at least one of the 12 findings positive", pos[:, finding_cols].any(axis=1)),
        ("rare finding", f"a finding positive in fewer than {RARE_PREVALENCE:.0%} of the audited pairs",
         pos[:, rare].any(axis=1) if rare else np.zeros(len(labels), bool)),
        ("three or more findings", "three or more of the 12 findings positive", pos[:, finding_cols].sum(axis=1) >= 3),
        ("uncommon label combination",
         f"a 14-label vector held by fewer than {UNCOMMON_SHARE:.0%} of the audited pairs",
         (share < UNCOMMON_SHARE) & labelled),
    ]


def studies_cells(rows: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """Partition by the number of distinct studies of the row's patient (1, 2, ...)."""
    per = rows.groupby("patient_id")["study_id"].transform("nunique").to_numpy()
    return [(str(k), per == k) for k in range(1, int(per.max()) + 1)]


def view_cells(views: pd.Series) -> list[tuple[str, np.ndarray]]:
    """Partition by view, largest first (unknown last)."""
    v = views.fillna("unknown").astype(str).str.strip().replace("", "unknown").to_numpy()
    names, counts = np.unique(v, return_counts=True)
    order = sorted(zip(names, counts), key=lambda t: (t[0] == "unknown", -t[1], t[0]))
    return [(str(name), v == name) for name, _ in order]


class LiftCells:
    """Study-level Recall@1 and lift (random pools, both directions, declared pools) of many row subsets, each
    with the audit's own patient-clustered interval (the same method, and coverage, as the table)."""

    def __init__(self, qv: QueryValues, pools: tuple[int, ...]):
        self.qv = qv
        self.base = pick(qv, level="study", negatives="random", N=pools, K=1, estimator="exact", metric="recall")
        self.masks: list[np.ndarray] = []

    def add(self, mask: np.ndarray) -> int:
        """Register a subset (bool mask in the set's row order); returns its index."""
        self.masks.append(np.asarray(mask, dtype=bool))
        return len(self.masks) - 1

    def compute(self) -> list[list[dict[str, Any]]]:
        """Per registered subset, one record per (direction, N)."""
        if not self.masks:
            return []
        base, order = self.base, self.qv.order
        f = base.values.shape[1]
        inside = np.stack([m[order] for m in self.masks], axis=1)  # (n, cells), work order
        values = np.where(np.repeat(inside, f, axis=1), np.tile(base.values, len(self.masks)), np.nan)
        chances = np.where(np.isnan(values), np.nan, np.tile(base.chances, len(self.masks)))
        spec = base.spec
        _, codes = np.unique(base.patient, return_inverse=True)
        low, high = mean_interval(*cluster_sums(values, codes.reshape(-1), int(codes.max()) + 1 if len(codes) else 0),
                                  spec.ci)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nanmean(values, axis=0)
            chance = np.nanmean(chances, axis=0)
        out = []
        for c in range(len(self.masks)):
            rows = []
            for j, key in enumerate(base.keys):
                col = c * f + j
                rows.append({"direction": key["direction"], "N": int(key["N"]), "recall": float(mean[col]),
                             "recall_ci": [float(low[col]), float(high[col])], "lift": float(mean[col] / chance[col]),
                             "lift_ci": [float(low[col] / chance[col]), float(high[col] / chance[col])]})
            out.append(rows)
        return out


def breakdowns(qv: QueryValues, rows: pd.DataFrame, labels: np.ndarray, views: pd.Series | None,
               pools: tuple[int, ...], min_cell: int) -> dict[str, Any]:
    """Every breakdown of the page as JSON-ready records (see the module docstring)."""
    cells = Cells(rows["patient_id"].to_numpy())
    lifts = LiftCells(qv, pools)
    out: dict[str, Any] = {"min_cell": min_cell}
    pending: list[tuple[dict[str, Any], int]] = []  # records waiting for their figures

    def group(record: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
        pending.append((record, lifts.add(mask)))
        return record

    masks = label_masks(labels)
    groups, suppressed = [], []
    for name, meaning, mask in masks:
        if cells.size(mask) < min_cell or cells.size(~mask) < min_cell:
            suppressed.append(name)
            continue
        groups.append(group({"group": name, "meaning": meaning, "n_pairs": int(mask.sum())}, mask))
    out["label_groups"] = {"available": bool(masks), "groups": groups, "suppressed": suppressed,
                           "control": "suppressed when the group or the rest holds fewer than the minimum"}

    def partition(cells_in, join):
        merged, merges = merge_ordered(cells_in, cells.size, min_cell, join)
        return {"groups": [group({"group": name, "n_pairs": int(mask.sum())}, mask) for name, mask in merged],
                "merged_cells": merges, "control": "small cells merged with their neighbours"}

    spp = studies_cells(rows)
    out["studies_per_patient"] = partition(spp, _range_join)
    if spp and out["studies_per_patient"]["groups"]:
        last = out["studies_per_patient"]["groups"][-1]
        if "\u2013" in last["group"] and last["group"].endswith(spp[-1][0]):
            last["group"] = last["group"].split("\u2013")[0] + " or more"
    if views is None:
        out["views"] = {"available": False, "groups": [],
                        "note": "needs --cohort: EmbeddingSet rows carry no view; give the cohort manifest to break "
                                "risk down by view"}
    else:
        out["views"] = {"available": True, **partition(view_cells(views), lambda n: " + ".join(n))}
    for (record, _), figures in zip(pending, lifts.compute()):
        record["rows"] = figures
    out["rank_histogram"] = {d: rank_histogram(ranks(qv, d), cells, min_cell)
                             for d in ("image_to_report", "report_to_image") if any(
                                 k["direction"] == d for k in qv.rank_keys)}
    return out


def decade_edges(n: int) -> list[int]:
    """Bin starts 1, 2, 6, 11, 101, 1001, ... up to n (rank r falls in [edge_i, edge_i+1))."""
    edges = [1, 2, 6, 11]
    while edges[-1] * 10 - 9 <= n:
        edges.append(edges[-1] * 10 - 9)
    return [e for e in edges if e <= n] + [n + 1]


def rank_histogram(rank: np.ndarray, cells: Cells, min_cell: int) -> dict[str, Any]:
    """Queries per rank bin (expected rank, floored) beside chance (rank uniform over 1..n), bins merged."""
    n = len(rank)
    r = np.floor(rank).astype(np.int64)
    edges = decade_edges(n)
    raw = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        name = str(lo) if hi - lo == 1 else f"{lo}\u2013{hi - 1}"
        raw.append((name, (r >= lo) & (r < hi)))
    merged, merges = merge_ordered(raw, cells.size, min_cell, _range_join)
    bins = []
    for name, mask in merged:
        lo, hi = (int(x) for x in (name.split("\u2013") + [name])[:2])
        # a random ranking puts each query's truth at a uniform rank in 1..n: n * width / n queries per bin
        bins.append({"ranks": name, "low": lo, "high": hi, "queries": int(mask.sum()), "chance": float(hi - lo + 1)})
    return {"bins": bins, "n_queries": n, "merged_cells": merges,
            "note": "expected rank of the query's own report among all audited candidates; chance = rank uniform"}
