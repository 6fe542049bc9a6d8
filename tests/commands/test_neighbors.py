"""`relink neighbors` end to end."""

import numpy as np
import pandas as pd

from relink.cli import main
from relink.embeddings import EmbeddingSet, save
from relink.tables import read_table


def test_neighbors_lists_top_k_without_text(tmp_path, capsys):
    rng = np.random.default_rng(2)
    image = rng.normal(size=(40, 8)).astype(np.float32)
    rows = pd.DataFrame({"pair_id": [f"s{i}" for i in range(40)], "patient_id": [f"p{i // 2}" for i in range(40)]})
    # identical: every image's own report is its best match
    emb = save(EmbeddingSet.from_arrays(rows, image, image, meta={"model": "hand-made"}), tmp_path / "emb")
    out = tmp_path / "nn.parquet"
    assert main(["neighbors", "--embeddings", str(emb), "--k", "3", "--out", str(out)]) == 0
    frame, prov = read_table(out)
    assert list(frame.columns) == ["query_pair_id", "rank", "candidate_pair_id", "score", "is_true", "same_patient"]
    assert len(frame) == 40 * 3 and prov["k"] == 3
    first = frame[frame["rank"] == 1]
    assert first.is_true.all() and (first.query_pair_id == first.candidate_pair_id).all()
    assert first.same_patient.all() and np.allclose(first.score, 1.0, atol=1e-5)
    assert (frame.groupby("query_pair_id").score.apply(lambda s: s.is_monotonic_decreasing)).all()
    # argparse refuses the option before the command runs
    assert main(["neighbors", "--embeddings", str(emb), "--k", "0", "--out", str(out)]) == 2
