"""Outputs in folders a user cannot write, and outputs a shared project folder can read.

Real processes: a read-only folder means nothing to root (the test suite
runs as root in CI) while root holds the capability to override file
permissions, so when the suite is root each command runs with
``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH`` dropped from its capability
bounding set (``prctl(PR_CAPBSET_DROP)``): then a folder made read-only with
chmod is read-only to it too. Each command must stop with one line naming
the folder, exit 2, and write nothing. Outputs are created with the
permissions the umask allows, not the private 0600/0700 of temporary files.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dp_fixtures import tiny_model_set

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
