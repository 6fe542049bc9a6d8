"""The output guard through `relink embed`, `relink train`, `relink cohort`: --out guarded, nothing left behind, one
line per bad input; read-only folders and the umask.

Each case runs the real command line and checks: exit status 2, one line on
stderr naming the option, file or row, no traceback, and every file that was
there before byte-identical afterwards (nothing half-written, nothing left).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.cohort import make_tiny_cohort
from helpers.sets import tiny_model_set
from relink import embeddings
from relink.cli import main as cli_main
from relink.cohort import read_cohort
from relink.models import load_model
from relink.models.checkpoint import save_checkpoint

MODEL = "relink-vit-tiny"
ARRAYS = ("image", "text", "image_trunk", "text_trunk")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def cli(argv: list[str]) -> int:
    """The console script's exit status (argparse exits through SystemExit)."""
    try:
        return cli_main(argv)
    except SystemExit as exc:
        return int(exc.code)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``folder`` (hidden ones included), files with their bytes."""
    out: dict[str, bytes | None] = {}
    for p in sorted(Path(folder).rglob("*")):
        out[str(p.relative_to(folder))] = p.read_bytes() if p.is_file() else None
    return out


def one_error_line(err: str, *needles: str) -> str:
    """Exactly one error line (progress notes such as "cache miss" may precede it), no traceback."""
    lines = [ln for ln in err.strip().splitlines() if ": error: " in ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("relink ")
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def arrays(folder: Path) -> dict[str, bytes]:
    return {a: (folder / f"{a}.npy").read_bytes() for a in ARRAYS}


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    return make_tiny_cohort(tmp_path_factory.mktemp("cohort"), n=24, seed=3)


@pytest.fixture()
def corrupt_cohort(tmp_path, cohort_dir):
    root = tmp_path / "corrupt"
    shutil.copytree(cohort_dir, root)
    read_cohort(root).image_file(13).write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    return root


def embed_args(cohort, out, *extra):
    return ["embed", "--cohort", str(cohort), "--model", MODEL, "--out", str(out), "--batch-size", "4",
            "--shard-size", "10", "--workers", "0", "--quiet", *extra]


# ---------------------------------------------------------------- embed


def test_embed_refuses_a_foreign_out_and_replaces_it_only_when_told(tmp_path, cohort_dir, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("\\chapter{Results}\n")
    (tmp_path / "notes.txt").write_text("keep me\n")
    before = snapshot(tmp_path)
    assert cli(embed_args(cohort_dir, busy)) == 2
    one_error_line(capsys.readouterr().err, "--out", str(busy), "not a relink embed output", "--overwrite")
    assert cli(embed_args(cohort_dir, tmp_path / "notes.txt")) == 2
    one_error_line(capsys.readouterr().err, "is a file")
    assert snapshot(tmp_path) == before

    assert cli(embed_args(cohort_dir, busy, "--overwrite")) == 0
    assert not (busy / "thesis.tex").exists() and len(embeddings.load(busy)) == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "notes.txt"]  # no temporaries, no work folder


def test_embed_replaces_its_own_earlier_output_atomically(tmp_path, cohort_dir, capsys):
    out = tmp_path / "emb"
    assert cli(embed_args(cohort_dir, out, "--no-trunk")) == 0
    first = embeddings.load(out).meta["weights_fingerprint"]
    other = ["embed", "--cohort", str(cohort_dir), "--model", "relink-vit-tiny-customtext", "--out", str(out),
             "--batch-size", "4", "--workers", "0", "--quiet"]
    assert cli(other) == 0
    assert "cache miss" in capsys.readouterr().err
    assert embeddings.load(out).meta["weights_fingerprint"] != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb"]


def test_bad_image_leaves_nothing_behind(tmp_path, corrupt_cohort, capsys):
    (tmp_path / "notes.txt").write_text("keep me\n")
    before = snapshot(tmp_path)
    out = tmp_path / "emb"  # shard 0-10 is finished before row 13 fails: its work folder must go too
    assert cli(embed_args(corrupt_cohort, out)) == 2
    one_error_line(capsys.readouterr().err, "row 13", "pair_id", "--skip-bad")
    assert snapshot(tmp_path) == before


def test_bad_image_keeps_an_earlier_output_byte_identical(tmp_path, cohort_dir, corrupt_cohort, capsys):
    out = tmp_path / "out" / "emb"
    assert cli(embed_args(cohort_dir, out)) == 0
    before = snapshot(tmp_path / "out")
    other = ["embed", "--cohort", str(corrupt_cohort), "--model", "relink-vit-tiny-customtext", "--out", str(out),
             "--batch-size", "4", "--shard-size", "10", "--workers", "0", "--quiet"]
    assert cli(other) == 2  # another model: a cache miss that fails at row 13
    one_error_line(capsys.readouterr().err, "row 13")
    assert snapshot(tmp_path / "out") == before


def test_model_folder_without_weights_is_an_error(tmp_path, cohort_dir, capsys):
    lm = load_model(MODEL)
    folder = save_checkpoint(lm.model, tmp_path / "ckpt", lm.model_cfg, lm.preprocess_cfg)
    (folder / "open_clip_model.safetensors").unlink()
    before = snapshot(tmp_path)
    argv = ["embed", "--cohort", str(cohort_dir), "--model", str(folder), "--out", str(tmp_path / "emb"), "--quiet"]
    assert cli(argv) == 2
    one_error_line(capsys.readouterr().err, str(folder), "no weights file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("args, flag", [
    (["--batch-size", "0"], "--batch-size"), (["--batch-size", "nan"], "--batch-size"),
    (["--workers", "-1"], "--workers"), (["--shard-size", "0"], "--shard-size"), (["--shard-size", "2.5"], "--shard-size"),
    (["--device", "tpu9"], "--device"), (["--precision", "fp8"], "--precision"),
])
def test_embed_numeric_and_choice_options_are_named(tmp_path, cohort_dir, capsys, args, flag):
    assert cli(embed_args(cohort_dir, tmp_path / "emb", *args)) == 2
    one_error_line(capsys.readouterr().err, flag)
    assert list(tmp_path.iterdir()) == []


KILL_IN_MERGE = """
import os, signal, sys
import relink.embed.merge as merge
real = merge.write_json
def write_json(path, obj):
    real(path, obj)
    if path.name == "meta.json":  # the merge's last file: every array is already in the temporary folder
        os.kill(os.getpid(), signal.SIGKILL)
merge.write_json = write_json
from relink.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_during_the_merge_then_rerun_is_identical_and_clean(tmp_path, cohort_dir):
    ref = tmp_path / "ref" / "emb"
    assert cli(embed_args(cohort_dir, ref)) == 0
    out = tmp_path / "run" / "emb"
    res = subprocess.run([sys.executable, "-c", KILL_IN_MERGE, *embed_args(cohort_dir, out)], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    left = sorted(p.name for p in out.parent.iterdir())
    assert "emb.work" in left and any(n.startswith(".emb.") and n.endswith(".tmp") for n in left), left
    assert not out.exists()

    assert cli(embed_args(cohort_dir, out)) == 0  # resumes from the work folder: nothing to embed, merge again
    assert sorted(p.name for p in out.parent.iterdir()) == ["emb"]
    assert arrays(out) == arrays(ref)
    assert (out / "rows.parquet").read_bytes() == (ref / "rows.parquet").read_bytes()


# ---------------------------------------------------------------- read-only destinations

RUN_AS = """
import json, sys
from relink.cli import main
codes = [main(argv) for argv in json.loads(sys.argv[1])]
print(json.dumps(codes))
"""


def _without_root_file_override():
    """For a child of root: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its capability bounding set.

    Root ignores file permissions (and ``os.access`` says yes to everything),
    so a read-only folder is only read-only to a process without these two
    capabilities: after ``exec`` the child is still uid 0 but obeys the mode
    bits like an ordinary user. (Switching to another uid is not possible
    here: the interpreter may live under root's private home folder.)
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        pytest.skip("needs Linux prctl to test a read-only folder as root")

    def drop():
        for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    return drop


def test_read_only_destination_is_one_line(cohort_dir, mimic_layout):
    """embed, train and cohort into a folder that cannot be written (as root: without the file-override capability)."""
    import json

    root = Path(tempfile.mkdtemp(prefix="relink-ro-"))
    try:
        cohort = shutil.copytree(cohort_dir, root / "cohort")
        ro = root / "ro"
        ro.mkdir()
        os.chmod(ro, 0o555)
        argvs = [embed_args(cohort, ro / "emb"),
                 ["train", "--cohort", str(cohort), "--out", str(ro / "ladder"), "--epochs", "1", "--quiet"],
                 ["cohort", "mimic-cxr", "--images", str(mimic_layout["images"]), "--reports",
                  str(mimic_layout["reports"]), "--out", str(ro / "m.parquet")]]
        drop = _without_root_file_override() if os.geteuid() == 0 else None
        res = subprocess.run([sys.executable, "-c", RUN_AS, json.dumps(argvs)], env=ENV, capture_output=True,
                             text=True, timeout=300, preexec_fn=drop, cwd=root)
        assert res.returncode == 0, res.stderr[-2000:]
        assert json.loads(res.stdout.strip().splitlines()[-1]) == [2, 2, 2], res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("relink ")]
        assert len(lines) == 3 and "Traceback" not in res.stderr, res.stderr
        for line, cmd in zip(lines, ("embed", "train", "cohort")):
            assert line.startswith(f"relink {cmd}: error: --out: cannot write in {ro}"), line
        assert list(ro.iterdir()) == []
    finally:
        os.chmod(root / "ro", 0o755)
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("command, target, text", [
    ("embed", "relink.embed.embed_many", "finished shards are kept in OUT.work"),
    ("train", "relink.models.ladder_train.train_ladder", "rungs saved so far are kept in OUT.work"),
])
def test_ctrl_c_says_what_is_kept(tmp_path, cohort_dir, capsys, monkeypatch, command, target, text):
    import importlib

    module, name = target.rsplit(".", 1)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), name, interrupted)
    argv = embed_args(cohort_dir, tmp_path / "o") if command == "embed" else \
        ["train", "--cohort", str(cohort_dir), "--out", str(tmp_path / "o"), "--quiet"]
    assert cli(argv) == 130
    err = capsys.readouterr().err
    assert text in err and "run the same command again" in err


# ---------------------------------------------------------------- train


def train_args(cohort, out, *extra):
    return ["train", "--cohort", str(cohort), "--out", str(out), "--epochs", "1", "--batch-size", "8",
            "--save-at", "1,2", "--quiet", *extra]


@pytest.mark.parametrize("args, flag", [
    (["--lr", "nan"], "--lr"), (["--lr", "-1"], "--lr"), (["--lr", "0"], "--lr"), (["--lr", "inf"], "--lr"),
    (["--epochs", "0"], "--epochs"), (["--warmup", "-1"], "--warmup"), (["--seed", "-1"], "--seed"),
    (["--weight-decay", "inf"], "--weight-decay"), (["--max-pairs", "0"], "--max-pairs"),
    (["--batch-size", "1.5"], "--batch-size"), (["--device", "tpu9"], "--device"),
])
def test_train_options_are_named(tmp_path, cohort_dir, capsys, args, flag):
    assert cli(train_args(cohort_dir, tmp_path / "l", *args)) == 2
    one_error_line(capsys.readouterr().err, flag)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("steps", ["0", "x", "1,,-2", ","])
def test_train_save_at_is_checked(tmp_path, cohort_dir, capsys, steps):
    argv = ["train", "--cohort", str(cohort_dir), "--out", str(tmp_path / "l"), "--save-at", steps]
    assert cli(argv) == 2
    one_error_line(capsys.readouterr().err, "--save-at")


def test_train_refuses_a_foreign_out_and_replaces_it_when_told(tmp_path, cohort_dir, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("\\chapter{Results}\n")
    before = snapshot(tmp_path)
    assert cli(train_args(cohort_dir, busy)) == 2
    one_error_line(capsys.readouterr().err, "--out", "not a relink train output", "--overwrite")
    assert snapshot(tmp_path) == before
    assert cli(train_args(cohort_dir, busy, "--overwrite")) == 0
    assert not (busy / "thesis.tex").exists() and (busy / "rung-2" / "open_clip_model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # no work folder, no temporaries
    load_model(str(busy / "rung-2"))


def test_train_bad_image_leaves_nothing_behind(tmp_path, cohort_dir, capsys):
    root = shutil.copytree(cohort_dir, tmp_path / "corrupt")
    cohort = read_cohort(root)
    row = int(np.flatnonzero(cohort.frame["split"].to_numpy() == "train")[-1])  # a row training reads
    cohort.image_file(row).write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    out = tmp_path / "runs" / "l"
    out.parent.mkdir()
    assert cli(train_args(root, out)) == 2
    one_error_line(capsys.readouterr().err, f"row {row}", "cannot read image")
    assert list(out.parent.iterdir()) == []


def test_export_csv_is_guarded_and_replaces_its_own(tmp_path, cohort_dir, capsys):
    mine = tmp_path / "train.csv"
    argv = ["train", "--cohort", str(cohort_dir), "--export-csv", str(mine)]
    assert cli(argv) == 0 and cli(argv) == 0  # its own earlier export is replaced
    foreign = tmp_path / "notes.csv"
    foreign.write_text("a,b\n1,2\n")
    assert cli(["train", "--cohort", str(cohort_dir), "--export-csv", str(foreign)]) == 2
    one_error_line(capsys.readouterr().err, "--export-csv", "not a relink train output")
    assert foreign.read_text() == "a,b\n1,2\n"


# ---------------------------------------------------------------- cohort


@pytest.fixture(scope="module")
def mimic_layout(tmp_path_factory):
    out = tmp_path_factory.mktemp("mimic") / "mimic"
    assert cli(["synth", "--layout", "mimic-cxr", "--out", str(out), "--patients", "4", "--seed", "1"]) == 0
    return {"images": out / "mimic-cxr-jpg", "reports": out / "mimic-cxr-reports"}


def cohort_args(layout, out, *extra):
    return ["cohort", "mimic-cxr", "--images", str(layout["images"]), "--reports", str(layout["reports"]),
            "--out", str(out), *extra]


def test_cohort_out_rules(tmp_path, mimic_layout, capsys):
    notes = tmp_path / "notes.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(notes)
    (tmp_path / "notes.txt").write_text("keep me\n")
    before = snapshot(tmp_path)
    assert cli(cohort_args(mimic_layout, notes)) == 2
    one_error_line(capsys.readouterr().err, str(notes), "not a relink cohort output", "--overwrite")
    assert cli(cohort_args(mimic_layout, tmp_path / "notes.txt")) == 2
    one_error_line(capsys.readouterr().err, ".parquet")
    assert snapshot(tmp_path) == before

    folder = tmp_path / "cohorts"  # a folder --out gets cohort.parquet; a re-run replaces its own manifest
    assert cli(cohort_args(mimic_layout, folder)) == 0 and cli(cohort_args(mimic_layout, folder)) == 0
    assert len(read_cohort(folder)) > 0 and sorted(p.name for p in folder.iterdir()) == ["cohort.parquet"]

    assert cli(cohort_args(mimic_layout, notes, "--overwrite")) == 0
    assert len(read_cohort(notes)) == len(read_cohort(folder))
    assert (tmp_path / "notes.txt").read_text() == "keep me\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_every_numeric_embed_option_is_checked_in_the_library(tmp_path, cohort_dir):
    from relink.embed import embed_cohort
    from relink.errors import RelinkError

    for kwargs, flag in ((dict(batch_size=0), "--batch-size"), (dict(shard_size=np.float64("nan")), "--shard-size"),
                         (dict(num_workers=-2), "--workers")):
        with pytest.raises(RelinkError, match=flag):
            embed_cohort(cohort_dir, MODEL, tmp_path / "e", progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_an_out_holding_the_cohort_is_refused_even_with_overwrite(tmp_path, cohort_dir, capsys):
    cohort = shutil.copytree(cohort_dir, tmp_path / "c")
    before = snapshot(tmp_path)
    assert cli(embed_args(cohort, cohort, "--overwrite")) == 2
    one_error_line(capsys.readouterr().err, f"--out {cohort} is --cohort")  # the output guard (relink.guard)
    assert cli(train_args(cohort, cohort / "images", "--overwrite")) == 2
    one_error_line(capsys.readouterr().err, "lies inside --cohort")
    assert snapshot(tmp_path) == before


def test_refuse_output_over_cohort_rule(cohort_dir):
    from relink.errors import RelinkError
    from relink.cohort import refuse_output_over_cohort

    cohort = read_cohort(cohort_dir)
    first = Path(cohort.frame["image_path"].iat[0])
    for out in (cohort_dir, cohort_dir / "images", cohort_dir / first.parent, cohort_dir.parent):
        with pytest.raises(RelinkError, match="holds the cohort's"):
            refuse_output_over_cohort(out, cohort)
    for out in (cohort_dir / "emb", cohort_dir / "images-emb", cohort_dir.parent / "elsewhere"):
        refuse_output_over_cohort(out, cohort)  # beside or inside, holding none of its files: allowed

# Outputs in folders a user cannot write, and outputs a shared project folder can read.
#
# Real processes: a read-only folder means nothing to root (the test suite
# runs as root in CI) while root holds the capability to override file
# permissions, so when the suite is root each command runs with
# ``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH`` dropped from its capability
# bounding set (``prctl(PR_CAPBSET_DROP)``): then a folder made read-only with
# chmod is read-only to it too. Each command must stop with one line naming
# the folder, exit 2, and write nothing. Outputs are created with the
# permissions the umask allows, not the private 0600/0700 of temporary files.
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    ckpt, emb = tiny_model_set(40)
    shutil.copytree(emb, root / "emb")
    shutil.copytree(ckpt, root / "model")
    subprocess.run([sys.executable, "-m", "relink", "synth", "--out", str(root / "synth"), "--patients", "6",
                    "--seed", "1", "--size", "32"], check=True, capture_output=True)
    return root


def _run(args, umask: int = 0o022, without_override: bool = False):
    libc = ctypes.CDLL(None, use_errno=True)

    def prepare():
        os.umask(umask)
        if without_override and os.geteuid() == 0:
            for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
                if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "relink", *args], env=env, capture_output=True, text=True,
                          preexec_fn=prepare)


@pytest.mark.parametrize("command", ["audit", "cohort", "embed", "mitigate"])
def test_a_read_only_folder_is_one_line_and_nothing_is_written(inputs, tmp_path, command):
    ro = tmp_path / "read-only"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        args = {
            "audit": ["audit", "--embeddings", str(inputs / "emb"), "--pools", "10,full", "--out", str(ro / "a.csv")],
            "cohort": ["cohort", "mimic-cxr", "--images", str(inputs / "synth"), "--reports", str(inputs / "synth"),
                       "--out", str(ro / "c.parquet")],  # the output is checked before the dataset is read
            "embed": ["embed", "--cohort", str(inputs / "synth"), "--model", str(inputs / "model"), "--out", str(ro / "e")],
            "mitigate": ["mitigate", "--embeddings", str(inputs / "emb"), "--epsilon", "1", "--delta", "1e-3",
                         "--out", str(ro / "dp")],
        }[command]
        run = _run(args, without_override=True)
        lines = [x for x in run.stderr.splitlines() if x.strip()]
        assert run.returncode == 2, run.stderr[-2000:]
        assert len(lines) == 1 and lines[0].startswith(f"relink {command}: error: "), run.stderr
        assert "cannot write" in lines[0] and str(ro) in lines[0], lines[0]
        assert "Traceback" not in run.stderr
        assert list(ro.iterdir()) == []
    finally:
        os.chmod(ro, 0o755)


def test_outputs_follow_the_umask(inputs, tmp_path):
    table = tmp_path / "a.csv"
    run = _run(["audit", "--embeddings", str(inputs / "emb"), "--pools", "10,full", "--bootstrap", "0", "--out",
                str(table)], umask=0o022)
    assert run.returncode == 0, run.stderr[-2000:]
    for f in (table, table.with_name("a.csv.provenance.json")):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, (f, oct(f.stat().st_mode))
    dp = tmp_path / "dp"
    run = _run(["mitigate", "--embeddings", str(inputs / "emb"), "--epsilon", "1", "--delta", "1e-3", "--epochs", "1",
                "--out", str(dp)], umask=0o027)
    assert run.returncode == 0, run.stderr[-2000:]
    assert stat.S_IMODE(dp.stat().st_mode) == 0o750
    for p in dp.rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) == (0o750 if p.is_dir() else 0o640), (p, oct(p.stat().st_mode))
