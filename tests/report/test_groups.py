"""Where the risk concentrates: group figures against a brute-force reference, minimum cells merged or suppressed."""

import numpy as np
import pytest
from scipy.stats import hypergeom

from helpers.report import rows_frame, write_set
from relink import embeddings
from relink.report import build
from relink.report.groups import Cells, decade_edges, merge_ordered
from relink.report.threat import ReportSpec


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    rows = rows_frame(500, seed=31)
    rows["Support Devices"] = 0.0
    firsts = rows.drop_duplicates("patient_id").index[:9]
    rows.loc[firsts, "Support Devices"] = 1.0  # nine pairs of nine patients: below the default minimum cell
    return write_set(tmp_path_factory.mktemp("groups") / "emb", n=500, noise=2.5, seed=31, rows=rows)


def _record(path, **spec):
    return build.build(embeddings.load(path), ReportSpec(attacker_pools=(100,), n_boot=100, **spec))[0]


def test_group_lift_matches_a_brute_force_reference(labelled):
    es = embeddings.load(labelled)
    record = _record(labelled)
    group = next(g for g in record["concentration"]["label_groups"]["groups"] if g["group"] == "no finding")
    mask = es.labels()[:, 0] == 1
    assert group["n_pairs"] == int(mask.sum())
    img, txt = es.unit("image").astype(np.float64), es.unit("text").astype(np.float64)
    for direction, scores in (("image_to_report", img @ txt.T), ("report_to_image", txt @ img.T)):
        above = (scores > np.diag(scores)[:, None] + 1e-6).sum(axis=1)
        recall = hypergeom.cdf(0, len(es) - 1, above[mask], 99).mean()
        row = next(r for r in group["rows"] if r["direction"] == direction)
        assert row["recall"] == pytest.approx(recall, rel=1e-6)
        assert row["lift"] == pytest.approx(recall * 100, rel=1e-6)


def test_small_label_groups_are_suppressed_and_named(labelled, tmp_path):
    shown = lambda rec: {g["group"] for g in rec["concentration"]["label_groups"]["groups"]}  # noqa: E731
    default = _record(labelled)
    assert "support devices" in default["concentration"]["label_groups"]["suppressed"]
    assert "support devices" not in shown(default)
    looser = _record(labelled, min_cell=5)
    assert "support devices" in shown(looser)
    sd = next(g for g in looser["concentration"]["label_groups"]["groups"] if g["group"] == "support devices")
    assert sd["n_pairs"] == 9
    # nine pairs of at most four patients stay suppressed at 5: the patient count binds too
    rows = rows_frame(500, seed=31)
    rows["Support Devices"] = 0.0
    rows.loc[rows.index[:9], "Support Devices"] = 1.0
    assert rows["patient_id"].iloc[:9].nunique() < 5
    few = write_set(tmp_path / "few", n=500, noise=2.5, seed=31, rows=rows)
    assert "support devices" in _record(few, min_cell=5)["concentration"]["label_groups"]["suppressed"]


def test_partitions_merge_small_cells_and_keep_every_row(labelled):
    es = embeddings.load(labelled)
    record = _record(labelled, min_cell=60)
    spp = record["concentration"]["studies_per_patient"]
    assert sum(g["n_pairs"] for g in spp["groups"]) == len(es)
    per = es.rows.groupby("patient_id")["study_id"].transform("nunique").to_numpy()
    for g in spp["groups"]:
        lo = int(g["group"].split("\u2013")[0].split(" ")[0])
        assert g["n_pairs"] >= 60 and lo in set(per)
    for hist in record["concentration"]["rank_histogram"].values():
        assert sum(b["queries"] for b in hist["bins"]) == len(es)
        assert sum(b["chance"] for b in hist["bins"]) == pytest.approx(len(es))  # guessing spreads every query
        assert all(b["queries"] >= 60 for b in hist["bins"])
        assert hist["bins"][0]["low"] == 1 and hist["bins"][-1]["high"] == len(es)
        assert all(a["high"] + 1 == b["low"] for a, b in zip(hist["bins"], hist["bins"][1:]))


def test_merge_ordered_by_hand():
    sizes = [3, 12, 4, 2, 15, 1]
    starts = np.cumsum([0] + sizes)
    n = starts[-1]
    cells = [(str(i), (np.arange(n) >= starts[i]) & (np.arange(n) < starts[i + 1])) for i in range(len(sizes))]
    size = Cells(np.arange(n).astype(str)).size  # one pair per patient: the size is the pair count
    merged, merges = merge_ordered(cells, size, 10, lambda names: "+".join(names))
    assert [name for name, _ in merged] == ["0+1", "2+3+4+5"] and merges == 4
    assert [int(m.sum()) for _, m in merged] == [15, 22]
    assert merge_ordered(cells[:1], size, 10, "+".join) == ([], 0)  # too small even together: nothing shown
    # the patient count binds too: 12 pairs of 2 patients is a cell of 2
    two = Cells(np.array(["a"] * 6 + ["b"] * 6))
    assert two.size(np.ones(12, bool)) == 2


def test_decade_edges():
    assert decade_edges(3000) == [1, 2, 6, 11, 101, 1001, 3001]
    assert decade_edges(10) == [1, 2, 6, 11]
    assert decade_edges(5) == [1, 2, 6]
