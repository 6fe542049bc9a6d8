"""The per-query values of one audit (:class:`QueryValues`), kept as counts and computed column by column.

Made by :func:`relink.retrieval.audit.audit_queries`, summarised (all queries
or any subset) by :func:`relink.retrieval.summary.summarise`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .spec import AuditSpec


class _Computed:
    """A field of :class:`QueryValues` computed from the counts on first use, unless one was given."""

    def __set_name__(self, owner, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return None  # the dataclass default: computed
        if obj.__dict__.get(self.slot) is None:
            obj._materialise()
        return obj.__dict__[self.slot]

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.slot] = value


@dataclass(eq=False)
class QueryValues:
    """Every per-query value of one audit, in *work order* (label groups contiguous): work row w is set row
    ``order[w]`` (:meth:`set_rows`, :meth:`in_set_order` map between the two).

    ``keys[f]`` names column f (``direction``, ``negatives``, ``level``, ``N``,
    ``K``, ``estimator``, ``metric``); ``values[:, f]`` is each query's value
    (NaN: left out, e.g. a matched pool it cannot fill), ``chances[:, f]`` its
    chance. Median-rank columns are apart (a median is no mean): ``rank_keys``,
    ``ranks`` (expected rank in the full pool) and ``rank_null`` (per column,
    each query's ``(truth_size, available)``). With hard negatives, the
    random-negative exact recall columns are kept even if not asked for.
    Value columns are computed from the counts a group (one pool, every K) at
    a time (:meth:`column_values`); ``values`` and ``chances``, the whole
    tables, are made on first use and kept.
    """

    keys: list[dict[str, Any]]
    values: np.ndarray = _Computed()
    chances: np.ndarray = _Computed()
    rank_keys: list[dict[str, Any]] = field(default_factory=list)
    ranks: np.ndarray = None
    rank_null: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    patient: np.ndarray = None
    order: np.ndarray = None
    spec: AuditSpec = None
    settings: dict[str, Any] = field(default_factory=dict)
    groups: list[tuple[list[int], Callable[[], tuple[np.ndarray, np.ndarray]]]] = field(default_factory=list,
                                                                                         repr=False)
    confident: dict[str, Any] | None = field(default=None, repr=False)  # the threshold attacker's counts
    run: dict[str, Any] = field(default_factory=dict, repr=False)  # plan and timings of the passes (not provenance)

    def __len__(self) -> int:
        return len(self.patient)

    def set_rows(self, rows: np.ndarray) -> np.ndarray:
        """Work rows of the set rows ``rows`` (a bool mask or indices in set order), ascending."""
        idx = np.asarray(rows)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        inverse = np.empty(len(self.order), dtype=np.int64)
        inverse[self.order] = np.arange(len(self.order))
        return np.sort(inverse[idx])

    def in_set_order(self, a: np.ndarray) -> np.ndarray:
        """A per-query array (work order, first axis) in the set's own row order."""
        out = np.empty_like(a)
        out[self.order] = a
        return out

    def column(self, **where: Any) -> int:
        """Index of the one value column matching ``where`` (e.g. direction=..., N=100, K=1)."""
        hits = [f for f, k in enumerate(self.keys) if all(k.get(c) == v for c, v in where.items())]
        if len(hits) != 1:
            raise LookupError(f"expected one audit column for {where}, found {len(hits)}")
        return hits[0]

    def _given(self) -> bool:
        return self.__dict__.get("_values") is not None and self.__dict__.get("_chances") is not None

    def group_of(self, f: int) -> tuple[int, int]:
        """(group, position in it) of value column ``f``: :meth:`column_values` of the group holds it."""
        if self._given() or not self.groups:
            return -1 - f, 0
        if not hasattr(self, "_where"):
            self._where = {c: (g, j) for g, (cols, _) in enumerate(self.groups) for j, c in enumerate(cols)}
        return self._where[f]

    def column_values(self, group: int) -> tuple[np.ndarray, np.ndarray]:
        """(queries, columns) values and chances of one group of columns (:meth:`group_of`), in work order."""
        if group < 0:  # a single column of given tables
            f = -1 - group
            return self.values[:, f:f + 1], self.chances[:, f:f + 1]
        return self.groups[group][1]()

    def _materialise(self) -> None:
        n, F = len(self), len(self.keys)
        values, chances = np.full((n, F), np.nan), np.full((n, F), np.nan)
        for cols, make in self.groups:
            v, c = make()
            values[:, cols], chances[:, cols] = v, c
        self.__dict__["_values"], self.__dict__["_chances"] = values, chances
