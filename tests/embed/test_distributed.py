"""A distributed launch, with real processes: checked before the process group is joined, bounded in time.

Launched by hand (RANK, WORLD_SIZE, ... set per process, no torchrun): rank 0
then hosts the launch's store itself, the path torchrun's tests
(tests/embed/test_run.py and the audit's scale tests) do not take. Bad
variables are rows of the hostile-input table (tests/test_hostile_inputs.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.sets import tiny_model_set


@pytest.fixture(scope="module")
def emb(tmp_path_factory) -> Path:
    _, folder = tiny_model_set(60)
    return Path(shutil.copytree(folder, tmp_path_factory.mktemp("launch") / "emb"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(rank: int, world: int, port: int) -> dict[str, str]:
    env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    return env


def _audit(emb: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "relink", "audit", *extra, "--embeddings", str(emb), "--pools", "10,full",
            "--bootstrap", "0", "--out", str(out)]


@pytest.mark.parametrize("rank, missing", [(0, "rank 1 "), (1, "rank 0 ")])
def test_a_launch_whose_other_rank_never_starts_stops_within_its_timeout(emb, tmp_path, rank, missing):
    """WORLD_SIZE=2 and only one process: it stops after --timeout with one line naming the absent rank
    (the process group's own default would wait for hours), and writes nothing."""
    t0 = time.monotonic()
    run = subprocess.run(_audit(emb, tmp_path / "a.csv", "--distributed", "--timeout", "3"),
                         env=_env(rank, 2, _free_port()), capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    lines = [x for x in run.stderr.splitlines() if x.strip()]
    assert run.returncode == 2, run.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("relink audit: error: --distributed: "), run.stderr
    assert missing in lines[0] and "did not arrive" in lines[0] and "--timeout 3" in lines[0], lines[0]
    assert took < 60, took  # the 3 s wait plus starting Python and torch on a busy machine
    assert list(tmp_path.iterdir()) == []


def test_a_hand_launch_of_two_processes_writes_the_one_process_table(emb, tmp_path):
    port = _free_port()
    procs = [subprocess.Popen(_audit(emb, tmp_path / "two.csv", "--distributed", "--timeout", "120"),
                              env=_env(r, 2, port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    one = subprocess.run(_audit(emb, tmp_path / "one.csv"), capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert one.returncode == 0, one.stderr[-2000:]
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
