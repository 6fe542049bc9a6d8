"""relink.workdir: the one keyed-folder mechanism (embed shards, audit slabs, the paper cache)."""

from __future__ import annotations

import json

import pytest

from relink.errors import RelinkError
from relink.workdir import ARTIFACT_KEY, KeyedWork, build_keyed, work_path


def test_work_folder_resumes_its_key_empties_another_and_refuses_a_foreign_folder(tmp_path):
    work = KeyedWork(work_path(tmp_path / "out"), {"b": 1, "a": [1, 2]})
    assert work.path == tmp_path / "out.work"
    assert work.prepare() == "new"
    (work.path / "part").write_text("done")
    assert KeyedWork(work.path, {"a": [1, 2], "b": 1}).prepare() == "resume"  # key order does not matter
    assert (work.path / "part").is_file()
    assert KeyedWork(work.path, {"a": 3}).prepare() == "stale" and not (work.path / "part").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(RelinkError, match="is not a relink audit work folder .* keeps its finished blocks"):
        KeyedWork(foreign, {}, what="audit", keeps="its finished blocks").prepare()
    assert (foreign / "notes.txt").read_text() == "keep"


def test_resumable_build_keeps_its_partial_work_and_appears_only_when_complete(tmp_path):
    target, calls = tmp_path / "thing", []

    def interrupted(folder):
        (folder / "first").write_text("1")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_keyed(target, {"x": 1}, interrupted, resumable=True)
    assert not target.exists() and (tmp_path / ".thing.partial" / "first").is_file()

    def resume(folder):
        calls.append(sorted(p.name for p in folder.iterdir()))
        (folder / "second").write_text("2")

    assert build_keyed(target, {"x": 1}, resume, resumable=True)
    assert calls == [["first"]]  # the interrupted work was kept for the same key
    assert json.loads((target / ARTIFACT_KEY).read_text()) == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing"]  # no partial folder, no key beside it
    assert not build_keyed(target, {"x": 1}, resume, resumable=True) and len(calls) == 1  # reused

    with pytest.raises(KeyboardInterrupt):
        build_keyed(target, {"x": 2}, interrupted, resumable=True)
    assert build_keyed(target, {"x": 3}, resume, resumable=True)
    assert calls[-1] == []  # another key's partial work is emptied first
    assert (target / "second").is_file() and not (target / "first").exists()
