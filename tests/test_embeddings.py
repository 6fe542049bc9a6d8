"""The EmbeddingSet's row reader and the validation it makes as a set loads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relink.embeddings import EmbeddingSet, RowSource, load, save
from relink.errors import RelinkError
from relink.retrieval import memory


def test_file_reads_match_the_array_and_leave_the_resident_set_alone(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.standard_normal((40000, 256), dtype=np.float32)  # 40 MB
    np.save(tmp_path / "a.npy", arr)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    src = RowSource(mapped, normalise=False)
    assert src.file_backed
    idx = np.array([5, 6, 7, 39999, 0, 12])
    np.testing.assert_array_equal(src.read(idx), arr[idx])
    np.testing.assert_array_equal(RowSource(mapped, rows=np.arange(100, 200)).read(slice(3, 9)),
                                  RowSource(arr[100:200]).read(slice(3, 9)))
    if memory.resident() is None:
        pytest.skip("the resident set cannot be read here")
    before = memory.resident()
    total = sum(float(src.read(slice(a, a + 1000)).sum()) for a in range(0, 40000, 1000))
    grew = memory.resident() - before
    assert grew < 8 << 20, grew  # blocks come and go; the file stays out of the process
    assert np.isclose(total, float(arr.sum(dtype=np.float64)), rtol=1e-4)
    before = memory.resident()
    float(np.asarray(mapped).sum())  # the same rows through the map: its pages stay resident
    assert memory.resident() - before > 30 << 20


def test_normalising_a_row_does_not_depend_on_its_block():
    from relink.embeddings import unit_rows

    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    x[7] *= 1e25  # its squared norm overflows float32
    whole = unit_rows(x)
    assert np.allclose(np.linalg.norm(whole, axis=1), 1, atol=1e-6)
    for a in range(0, 50, 7):
        np.testing.assert_array_equal(unit_rows(x[a:a + 7]), whole[a:a + 7])


def test_loading_validates_in_blocks_and_names_the_row(tmp_path):
    rng = np.random.default_rng(0)
    image, text = rng.standard_normal((5000, 512), dtype=np.float32), rng.standard_normal((5000, 512), dtype=np.float32)
    image[4321, 7] = np.inf  # past the first 8 MB block
    rows = pd.DataFrame({"pair_id": [f"s{i}" for i in range(5000)], "patient_id": [f"p{i}" for i in range(5000)]})
    bad = save(EmbeddingSet.from_arrays(rows, text, text), tmp_path / "bad")
    np.save(bad / "image.npy", image)
    with pytest.raises(RelinkError, match=r"image\.npy row 4321 has non-finite values"):
        load(bad)
    assert len(load(bad, check_values=False)) == 5000  # shapes only
