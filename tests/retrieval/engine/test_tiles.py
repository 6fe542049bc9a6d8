"""The tile counter: threshold counts of every row and column, over all candidates and within groups."""

from types import SimpleNamespace

import numpy as np
import pytest

from helpers.brute import unit


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_kernel_with_several_column_groups(engine):
    import torch

    from relink.retrieval.engine.tiles import TileCounter

    rng = np.random.default_rng(9)
    n = 101
    x, y = unit(rng, n, 5), unit(rng, n, 5)
    S = (x @ y.T).astype(np.float32)
    diag = np.einsum("ij,ij->i", x, y).astype(np.float32)
    np.fill_diagonal(S, diag)
    thr = np.stack([diag, diag + 0.05], 1).astype(np.float32)
    on = np.c_[np.ones(n, bool), rng.random(n) < 0.5]
    edges = np.array([0, 30, 31, 77, n])
    counter = TileCounter(n, torch.from_numpy(diag), (thr, on), (thr, on), [edges], 0.0, tiles=(16, 16), engine=engine,
                          group_cells=16 * 48)
    with counter:
        counter.add(torch.from_numpy(x), 0, torch.from_numpy(y), 0)
    got = SimpleNamespace(row_above=counter.row_counts(0, n), col_above=counter.take_cols())
    group = np.searchsorted(edges, np.arange(n), side="right") - 1
    same = group[:, None] == group[None, :]
    for k in range(2):
        for name, M in (("row", S), ("col", S.T)):
            above = (M > thr[:, k, None]).sum(1)
            atleast = (M >= thr[:, k, None]).sum(1)
            above_g = ((M > thr[:, k, None]) & same).sum(1)
            rows = on[:, k]
            np.testing.assert_array_equal(getattr(got, f"{name}_above")[k, 0][rows], above[rows])
            np.testing.assert_array_equal(getattr(got, f"{name}_above")[k, 1][rows], above_g[rows])
