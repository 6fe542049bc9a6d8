"""relink.models.ladder_store: the ladder's work folder is refused when it is not relink's, resumed when it is."""

import json

import pytest

from relink.errors import RelinkError
from relink.models.ladder_store import LADDER_FILE, LadderStore
from relink.workdir import work_path


def test_a_foreign_work_folder_is_refused_and_left_alone_a_ladders_is_taken(tmp_path):
    out, signature = tmp_path / "ladder", {"save_at": [1, 2], "seed": 0}
    work = work_path(out)
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    with pytest.raises(RelinkError, match=r"ladder\.work exists and is not a relink train work folder .*its rungs"):
        LadderStore(out, signature)
    assert (work / "notes.txt").read_text() == "mine"
    (work / "notes.txt").unlink()
    (work / LADDER_FILE).write_text(json.dumps({"signature": {"seed": 1}, "rungs": []}))
    store = LadderStore(out, signature)  # relink's own unfinished work, of other settings: started afresh
    assert store.done() == []
