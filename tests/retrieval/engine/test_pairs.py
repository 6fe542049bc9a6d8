"""Codes of identical rows: equal exactly when two rows are bitwise identical."""

import numpy as np


def test_identical_rows_are_exact_even_under_hash_collisions(monkeypatch):
    from relink.retrieval.engine import identical_rows

    rng = np.random.default_rng(10)
    a = rng.normal(size=(50, 6)).astype(np.float32)
    a[[3, 17, 40]] = a[5]
    a[22] = a[9]
    a[23] = a[9].copy()
    a[23, 0] = np.nextafter(a[23, 0], np.float32(1))  # one bit away: not identical
    codes = identical_rows(a)
    expected = np.unique(a, axis=0, return_inverse=True)[1].reshape(-1)
    assert np.array_equal(codes[:, None] == codes[None, :], expected[:, None] == expected[None, :])
    # with every hash constant 1, a row and its reversal collide: the exact fallback must separate them
    monkeypatch.setattr(np.random, "default_rng", lambda seed: type("R", (), {
        "integers": staticmethod(lambda lo, hi, size, dtype: np.zeros(size, dtype=dtype))})())
    a[30] = a[31][::-1]
    expected = np.unique(a, axis=0, return_inverse=True)[1].reshape(-1)
    codes = identical_rows(a)
    assert codes[30] != codes[31]
    assert np.array_equal(codes[:, None] == codes[None, :], expected[:, None] == expected[None, :])
