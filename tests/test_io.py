"""relink.io: atomic writes, the output guard, leftovers of killed writers, valid JSON."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from relink.errors import RelinkError
from relink.io import (atomic_dir, atomic_path, canonical, claim_output, clean_leftovers, json_safe, mark_output,
                       output_owner, write_json)
from relink.tables import write_table


def test_atomic_path_replaces_only_on_success_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_atomic_dir_keeps_the_old_folder_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("interrupted")
    assert (target / "a").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_json_is_always_valid_json():
    obj = {"nan": float("nan"), "inf": math.inf, "np": np.float64(2.5), "arr": np.array([1, np.nan]), "t": (1, 2)}
    assert json_safe(obj) == {"nan": None, "inf": None, "np": 2.5, "arr": [1.0, None], "t": [1, 2]}
    assert canonical({"b": 1, "a": float("nan")}) == {"a": None, "b": 1}


def test_written_json_and_tables_parse_strictly(tmp_path):
    write_json(tmp_path / "p.json", {"epsilon": float("nan")})
    json.loads((tmp_path / "p.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    frame = pd.DataFrame({"value": [0.5, np.nan]})
    write_table(frame, tmp_path / "t.json", {"command": "audit", "lift": float("inf")})
    doc = json.loads((tmp_path / "t.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert doc["rows"][1]["value"] is None and doc["provenance"]["lift"] is None


def test_the_guard_refuses_what_is_not_ours_and_allows_our_own(tmp_path):
    user = tmp_path / "notes.csv"
    user.write_text("mine\n")
    with pytest.raises(RelinkError, match="not a relink audit output; choose another --out, or pass --overwrite"):
        claim_output(user, "file", owner="audit")
    assert claim_output(user, "file", owner="audit", overwrite=True) == user
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "ours.csv", {"command": "audit"})
    assert output_owner(tmp_path / "ours.csv") == "audit"
    claim_output(tmp_path / "ours.csv", "file", owner="audit")
    with pytest.raises(RelinkError, match="not a relink probe output"):
        claim_output(tmp_path / "ours.csv", "file", owner="probe")
    with pytest.raises(RelinkError, match="is a folder"):
        claim_output(tmp_path, "file", owner="audit")
    with pytest.raises(RelinkError, match="is a file"):
        claim_output(user, "dir", owner="mitigate", overwrite=True)
    with pytest.raises(RelinkError, match="choose another --out$"):
        claim_output(user, "file", owner="synth", overwrite=None)  # a command without --overwrite
    folder = tmp_path / "dp"
    folder.mkdir()
    claim_output(folder, "dir", owner="mitigate")  # an empty folder is free
    (folder / "thesis.tex").write_text("x")
    with pytest.raises(RelinkError, match="not a relink mitigate output"):
        claim_output(folder, "dir", owner="mitigate")
    mark_output(folder, "mitigate")
    assert output_owner(folder) == "mitigate"
    claim_output(folder, "dir", owner="mitigate")
    assert (folder / "thesis.tex").read_text() == "x"  # the guard itself never deletes anything


def test_leftovers_of_a_dead_writer_are_removed_and_a_half_replaced_output_restored(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    out = tmp_path / "emb"
    (tmp_path / f".emb.{dead}.abc.tmp").mkdir()  # a killed writer's temporary folder
    (tmp_path / f".emb.{dead}.old").mkdir()  # killed between its two renames: the previous output
    (tmp_path / f".emb.{dead}.old" / "meta.json").write_text("{}")
    alive = tmp_path / f".emb.{os.getpid()}.xyz.tmp"  # a writer still running (this process)
    alive.mkdir()
    removed = clean_leftovers(out)
    assert [p.name for p in removed] == [f".emb.{dead}.abc.tmp"]
    assert (out / "meta.json").is_file() and alive.is_dir()


# ------------------------------------------------------------- the output guard (relink.guard)

from relink.guard import Output, check_inputs, claim, keep_apart  # noqa: E402
from relink.tables import side_files, table_output  # noqa: E402


def test_the_guard_claims_side_files_and_tells_a_users_file_from_our_own(tmp_path):
    table = table_output("--out", tmp_path / "a.csv")
    assert table.sides == (tmp_path / "a.csv.provenance.json",) and side_files(tmp_path / "a.parquet") == ()
    (tmp_path / "a.csv.provenance.json").write_text("my notes\n")
    with pytest.raises(RelinkError, match=r"^--out .*a\.csv\.provenance\.json: an existing file that is not a relink audit"):
        claim("audit", [table])
    claim("audit", [table], overwrite=True)
    (tmp_path / "a.csv.provenance.json").unlink()
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "a.csv", {"relink_version": "x", "command": "audit"})
    assert output_owner(tmp_path / "a.csv.provenance.json") == "audit"
    claim("audit", [table])  # our own earlier table and side file
    with pytest.raises(RelinkError, match="not a relink neighbors output"):
        claim("neighbors", [table])


def test_a_link_is_never_an_earlier_output_and_never_written_through(tmp_path):
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "ours.json", {"command": "audit"})
    (tmp_path / "link.json").symlink_to(tmp_path / "ours.json")
    assert output_owner(tmp_path / "ours.json") == "audit" and output_owner(tmp_path / "link.json") is None
    with pytest.raises(RelinkError, match="is a symbolic link"):
        claim("audit", [table_output("--out", tmp_path / "link.json")])
    claim("audit", [table_output("--out", tmp_path / "link.json")], overwrite=True)
    write_table(pd.DataFrame({"a": [2]}), tmp_path / "link.json", {"command": "audit"})
    assert not (tmp_path / "link.json").is_symlink()
    assert json.loads((tmp_path / "ours.json").read_text())["rows"] == [{"a": 1}]  # the target is untouched


def test_an_output_never_is_enters_or_holds_an_input(tmp_path):
    emb = tmp_path / "emb"
    emb.mkdir()
    (emb / "rows.parquet").write_text("x")
    (tmp_path / "alias").symlink_to(emb)
    cases = [
        (Output("--out", emb, "dir"), " is --embeddings"),
        (Output("--out", emb / "rows.parquet"), "lies inside --embeddings"),
        (Output("--out", emb / "new.csv"), "lies inside --embeddings"),
        (Output("--out", tmp_path / "alias" / "rows.parquet"), "--embeddings"),
        (Output("--out", tmp_path, "dir"), "holds --embeddings"),
        (table_output("--out", emb / "x" / ".." / "t.csv"), "lies inside"),
        (Output("--out", tmp_path / "t.csv", sides=(emb / "side.json",)), "(its side.json) lies inside"),
    ]
    for output, message in cases:
        for overwrite in (False, True):
            with pytest.raises(RelinkError, match=re.escape(message) + ".*even with --overwrite"):
                claim("audit", [output], inputs=[("--embeddings", emb)], overwrite=overwrite)
    keep_apart([Output("--out", tmp_path / "emb2", "dir")], [("--embeddings", emb)])  # a sibling is fine
    keep_apart([Output("--out", tmp_path / "emb.csv")], [("--embeddings", emb)])


def test_an_input_given_twice_and_two_outputs_on_one_path_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(RelinkError, match=r"^--embeddings .*/a is given twice; give each input once$"):
        check_inputs([("--embeddings", [tmp_path / "a", tmp_path / "a"])])
    with pytest.raises(RelinkError, match=r"--embeddings .*/b is given twice \(as .*/a\)"):
        check_inputs([("--embeddings", [tmp_path / "a", tmp_path / "b"])])
    check_inputs([("--embeddings", tmp_path / "a"), ("--bank", tmp_path / "a")])  # across flags: the command's call
    with pytest.raises(RelinkError, match="--out and --json must name different files"):
        claim("report", [Output("--out", tmp_path / "r.html"), Output("--json", tmp_path / "r.html")])
    with pytest.raises(RelinkError, match="--out and --audit must name different files"):
        claim("report", [Output("--out", tmp_path / "t.csv.provenance.json"), table_output("--audit", tmp_path / "t.csv")])


def test_the_commands_default_join_timeout_is_the_librarys():
    from relink.commands import JOIN_TIMEOUT
    from relink.embed.distributed import JOIN_TIMEOUT as LIBRARY

    assert JOIN_TIMEOUT == LIBRARY and 60 <= LIBRARY <= 3600  # minutes, not hours


def test_a_folder_output_at_a_link_replaces_the_link_never_the_folder_it_points_to(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("x")
    (tmp_path / "dp").symlink_to(theirs)
    with pytest.raises(RelinkError, match="is a symbolic link"):
        claim("mitigate", [Output("--out", tmp_path / "dp", "dir")])
    claim("mitigate", [Output("--out", tmp_path / "dp", "dir")], overwrite=True)
    with atomic_dir(tmp_path / "dp") as tmp:
        (tmp / "heads.safetensors").write_text("new")
    assert not (tmp_path / "dp").is_symlink() and (tmp_path / "dp" / "heads.safetensors").is_file()
    assert [p.name for p in theirs.iterdir()] == ["thesis.tex"]


def test_the_model_an_embedding_set_names_is_an_input_too(tmp_path):
    """Review finding: `mitigate` without --model loads the model --embeddings/meta.json names; an --out inside that
    model folder was not refused (and with --overwrite replaced it)."""
    from relink.guard import Output, claim, set_models

    model = tmp_path / "model"
    model.mkdir()
    (model / "open_clip_model.safetensors").write_bytes(b"weights")
    emb = tmp_path / "emb"
    emb.mkdir()
    (emb / "meta.json").write_text(json.dumps({"format_version": 1, "model": str(model)}))
    inputs = [("--embeddings", str(emb)), *set_models("--embeddings", str(emb))]
    for target in (model, model / "release"):
        with pytest.raises(RelinkError, match=r"--embeddings \(its model\)"):
            claim("mitigate", [Output("--out", target, "dir")], inputs=inputs, overwrite=True)
    assert (model / "open_clip_model.safetensors").read_bytes() == b"weights"
    assert set_models("--embeddings", str(tmp_path / "no-such-set")) == []
    claim("mitigate", [Output("--out", tmp_path / "elsewhere", "dir")], inputs=inputs, overwrite=False)
