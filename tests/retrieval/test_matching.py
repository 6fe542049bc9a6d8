"""Pathology-matched groups from the 14 CheXpert labels."""

import numpy as np
import pytest

from relink.errors import RelinkError
from relink.retrieval.matching import check_labelled, group_summary, label_groups, map_labels

U, M = -1.0, np.nan


def _rows(*rows):
    out = np.zeros((len(rows), 14))
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def test_same_vector_same_group_and_positive_sets_are_coarser():
    labels = _rows([1, 0, 1], [1, 0, 1], [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, U], [0, 1], [1, M, 1])
    g = label_groups(labels)
    full, pos = g["pathology_matched"], g["positive_set_matched"]
    assert full[0] == full[1] != full[2]
    assert full[0] == full[4]  # missing reads as negative by default
    assert pos[0] == pos[1] == pos[2] == pos[4] != pos[3]
    for code in np.unique(full):  # nesting: one positive set per pathology group
        assert len(np.unique(pos[full == code])) == 1


def test_label_policies():
    labels = _rows([U], [0], [1], [M])
    own = label_groups(labels)["pathology_matched"]
    assert len(set(own)) == 3 and own[1] == own[3]
    neg = label_groups(labels, uncertain="negative")["pathology_matched"]
    assert neg[0] == neg[1] == neg[3] != neg[2]
    posi = label_groups(labels, uncertain="positive")
    assert posi["pathology_matched"][0] == posi["pathology_matched"][2]
    assert posi["positive_set_matched"][0] == posi["positive_set_matched"][2]
    kept = label_groups(labels, missing="own")["pathology_matched"]
    assert len(set(kept)) == 4
    assert np.isnan(map_labels(labels, missing="own")[3, 0])
    with pytest.raises(RelinkError, match="uncertain labels policy"):
        label_groups(labels, uncertain="maybe")


def test_a_set_without_labels_is_refused_and_unlabelled_rows_are_named():
    with pytest.raises(RelinkError, match="there are none"):
        check_labelled(None)
    with pytest.raises(RelinkError, match="every label is missing"):
        check_labelled(np.full((3, 14), np.nan))
    labels = np.zeros((4, 14))
    labels[[1, 3]] = np.nan
    labels[2, :13] = np.nan  # one label value is enough to be labelled
    assert check_labelled(labels).tolist() == [False, True, False, True]


@pytest.mark.parametrize("missing", ["negative", "own"])
def test_unlabelled_rows_belong_to_no_group(missing):
    labels = _rows([0], [0], [1], [1], [0], [0])
    labels[[1, 4, 5]] = np.nan  # rows 1, 4, 5: no label at all; 0 is all-negative like an unlabelled row would read
    for name, codes in label_groups(labels, missing=missing).items():
        assert len({codes[1], codes[4], codes[5]}) == 3, name  # each alone ...
        assert not {codes[1], codes[4], codes[5]} & {codes[0], codes[2]}, name  # ... and in no labelled row's group
        assert codes[2] == codes[3], name
    g = label_groups(labels)
    for code in np.unique(g["pathology_matched"]):  # nesting still holds
        assert len(np.unique(g["positive_set_matched"][g["pathology_matched"] == code])) == 1
    assert group_summary(g["pathology_matched"], ~np.isnan(labels).all(axis=1)) == (2, 4)  # {0}, {2, 3}; 0,1,4,5 alone
