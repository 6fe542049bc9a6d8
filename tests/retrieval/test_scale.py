"""The audit out of core, resumable and across processes: the same table whatever the blocks, kills or ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from relink.cli import main
from relink.embeddings import EmbeddingSet, load, save
from relink.errors import RelinkError
from relink.labels import CHEXPERT_LABELS
from relink.retrieval import memory
from relink.retrieval.scale import Scale
from relink.retrieval.audit import audit_queries, summarise
from relink.retrieval.spec import AuditSpec
from relink.retrieval.work import work_path
from helpers.brute import unit

FULL = AuditSpec(pools=(10, 100, 1000, "full"), ks=(1, 5), negatives=("random", "pathology_matched",
                                                                      "positive_set_matched"), n_boot=100)


def _set(folder: Path, n: int, d: int, seed: int = 0, labels: bool = True) -> Path:
    """A set on disk with a planted signal, patients of 1-5 pairs, duplicate reports and three label groups."""
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n), rng.integers(1, 6, n))[:n]
    image = unit(rng, n, d)
    text = 0.3 * image + unit(rng, n, d)
    text[rng.integers(0, n, n // 50)] = text[1]  # ties with the truth
    rows = pd.DataFrame({"pair_id": [f"s{i}" for i in range(n)], "patient_id": [f"p{p}" for p in patient],
                         "split": np.where(np.arange(n) % 3 == 0, "val", "test")})
    if labels:
        group = rng.integers(0, 3, n)
        for j, name in enumerate(CHEXPERT_LABELS):
            rows[name] = (group == j % 3).astype(float)
    save(EmbeddingSet.from_arrays(rows, image, text, meta={"model": "planted"}), folder)
    return folder


@pytest.fixture(scope="module")
def disk_set(tmp_path_factory) -> Path:
    return _set(tmp_path_factory.mktemp("scale") / "emb", 5000, 512)


def _estimated(monkeypatch):
    """Plan blocks from the estimates alone (the resident set of a test process is not the audit's)."""
    monkeypatch.setattr(memory, "resident", lambda: None)


def test_a_small_budget_gives_the_in_core_table(disk_set, monkeypatch):
    _estimated(monkeypatch)
    es = load(disk_set)
    assert isinstance(es.image, np.memmap)
    qa, qb = audit_queries(es, FULL, scale=Scale(memory=24 << 20)), audit_queries(es, FULL)
    small, big = qa.run, qb.run
    a, b = summarise(qa), summarise(qb)
    assert small["slabs"] > 2 and small["blocks"] > 1, small  # many rectangles of the product
    assert big["slabs"] == 1 and big["blocks"] == 1, big
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a.attrs == b.attrs


def test_rows_audit_a_split_without_copying_it(disk_set):
    es = load(disk_set)
    mask = es.rows["split"].to_numpy() == "val"
    spec = FULL.but(n_boot=50)
    a = summarise(audit_queries(es, spec, rows=mask))
    b = summarise(audit_queries(es.split("val"), spec))
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.parametrize("text, size", [("256MB", 256 << 20), ("1.5g", 3 << 29), ("512 KiB", None), ("64M", 64 << 20),
                                        ("20000000", 20000000)])
def test_memory_sizes(text, size):
    if size is None:
        with pytest.raises(RelinkError, match="at least 16 MB"):
            memory.parse_memory(text)
    else:
        assert memory.parse_memory(text) == size
    for bad in ("lots", "-1G", "1e9", ""):
        with pytest.raises(RelinkError, match="--memory"):
            memory.parse_memory(bad)


def test_a_budget_too_small_says_how_much_is_needed(disk_set, monkeypatch):
    _estimated(monkeypatch)
    with pytest.raises(RelinkError, match=r"--memory 4 MB is too small for 5,000 pairs of dimension 512.*give at least"):
        audit_queries(load(disk_set), FULL, scale=Scale(memory=4 << 20))


def _argv(emb: Path, out: Path, *extra: str) -> list[str]:
    return ["audit", "--embeddings", str(emb), "--out", str(out), "--pools", "10,100,full", "--k", "1,5",
            "--hard-negatives", "--bootstrap", "50", *extra]


@pytest.fixture(scope="module")
def reference(disk_set, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "audit.csv"
    assert main(_argv(disk_set, out)) == 0
    return out


def _same_table(a: Path, b: Path) -> None:
    assert a.read_bytes() == b.read_bytes()
    prov = [json.loads(Path(str(p) + ".provenance.json").read_text()) for p in (a, b)]
    assert prov[0] == prov[1]


def test_interrupted_audit_keeps_finished_blocks_and_resumes_to_the_same_table(disk_set, reference, tmp_path,
                                                                               monkeypatch, capsys):
    from relink.retrieval.work import AuditWork

    _estimated(monkeypatch)
    out = tmp_path / "audit.csv"
    write = AuditWork.write
    done = []

    def write_then_stop(self, *args):
        write(self, *args)
        done.append(args[:2])
        if len(done) == 2:
            raise KeyboardInterrupt  # Ctrl-C after the second finished slab

    monkeypatch.setattr(AuditWork, "write", write_then_stop)
    assert main(_argv(disk_set, out, "--memory", "24MB")) == 130
    assert "finished blocks are kept in OUT.work" in capsys.readouterr().err
    work = work_path(out)
    kept = sorted(p.name for p in work.glob("rows-*.npz"))
    assert len(kept) == 2 and (work / "manifest.json").is_file() and not out.exists()
    monkeypatch.setattr(AuditWork, "write", write)
    assert main(_argv(disk_set, out, "--memory", "40MB")) == 0  # another budget: other slabs around the kept ones
    assert "resumed: 2 finished block(s)" in capsys.readouterr().err
    _same_table(out, reference)
    assert not work.exists()


def test_killed_audit_resumes_to_the_same_table(disk_set, reference, tmp_path):
    out = tmp_path / "audit.csv"
    # a real process, killed (no clean-up of any kind) right after its second finished slab
    script = textwrap.dedent(f"""
        import os, sys
        from relink.retrieval import memory
        from relink.retrieval.work import AuditWork
        memory.resident = lambda: None
        write, count = AuditWork.write, []
        def write_then_die(self, *args):
            write(self, *args)
            count.append(1)
            if len(count) == 2:
                os._exit(9)
        AuditWork.write = write_then_die
        from relink.cli import main
        sys.exit(main({_argv(disk_set, out, "--memory", "24MB")!r}))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 9, res.stderr[-2000:]
    assert len(list(work_path(out).glob("rows-*.npz"))) == 2 and not out.exists()
    assert main(_argv(disk_set, out)) == 0
    _same_table(out, reference)
    assert not work_path(out).exists()


def test_a_stale_work_folder_is_emptied_and_a_foreign_one_refused(disk_set, reference, tmp_path, capsys):
    out = tmp_path / "audit.csv"
    work = work_path(out)
    work.mkdir()
    (work / "manifest.json").write_text(json.dumps({"n": 1}))  # another audit's
    (work / "rows-0000000000-0000000510.npz").write_bytes(b"not these counts")
    assert main(_argv(disk_set, out)) == 0
    assert "started afresh" in capsys.readouterr().err
    _same_table(out, reference)
    assert not work.exists()
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    out.unlink()
    assert main(_argv(disk_set, out)) == 2
    assert "is not a relink work folder" in capsys.readouterr().err
    assert (work / "notes.txt").read_text() == "mine" and not out.exists()


def _fresh_audit(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """``relink audit ARGS`` in a fresh interpreter: the result and its peak RSS above the budget's baseline
    (the process with the audit's libraries imported and used once: relink.retrieval.memory.baseline), MiB."""
    script = textwrap.dedent(f"""
        import sys
        def hwm():
            with open("/proc/self/status") as fh:
                return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:")) / 1024
        from relink.retrieval import audit, confident, summary  # as relink.api.audit does before its baseline
        from relink.retrieval.memory import baseline, return_freed_memory
        return_freed_memory()
        baseline()
        base = hwm()
        from relink.cli import main
        code = main({args!r})
        print("ABOVE", hwm() - base)
        sys.exit(code)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    above = [float(ln.split()[1]) for ln in res.stdout.splitlines() if ln.startswith("ABOVE ")]
    return res, above[0] if above else float("nan")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read the peak resident set")
def test_the_budget_counts_the_audit_s_data_above_its_libraries(disk_set, tmp_path):
    # --memory covers the audit's own data above the process once its libraries are loaded (pandas, Arrow, scipy
    # and torch are not counted): 48 MB holds this set's audit, and the peak stays within it ...
    res, above = _fresh_audit(_argv(disk_set, tmp_path / "small.csv", "--memory", "48MB"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert above <= 48, above
    # ... while a budget below what one tile and the per-query state need is refused, naming the size to give
    res, _ = _fresh_audit(_argv(disk_set, tmp_path / "tiny.csv", "--memory", "16MB"))
    assert res.returncode == 2 and "--memory 16 MB is too small" in res.stderr, res.stderr[-2000:]


@pytest.mark.parametrize("extra, message", [(["--pools", "100000"], "N=100000"), (["--memory", "lots"], "--memory"),
                                            (["--memory", "16MB"], "is too small")])
def test_bad_input_leaves_no_work_folder(disk_set, tmp_path, capsys, extra, message):
    out = tmp_path / "audit.csv"
    assert main(_argv(disk_set, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _torchrun(args: list[str], nproc: int, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "relink", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_torchrun_two_processes_write_the_one_process_table(disk_set, reference, tmp_path):
    out = tmp_path / "audit.csv"
    res = _torchrun([*_argv(disk_set, out, "--memory", "320MB"), "--distributed"], 2, tmp_path)  # libraries count
    assert res.returncode == 0, res.stderr[-3000:]
    _same_table(out, reference)
    assert not work_path(out).exists()
    # a split, patient level only, one direction: the report side's counts are all partial per rank
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    sub = ["--split", "test", "--directions", "report_to_image", "--levels", "patient"]
    assert main([*_argv(disk_set, one), *sub]) == 0
    res = _torchrun([*_argv(disk_set, two), *sub, "--distributed"], 2, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    _same_table(one, two)


@pytest.mark.slow
def test_torchrun_bad_input_is_one_line(disk_set, tmp_path):
    res = _torchrun([*_argv(disk_set, tmp_path / "a.csv", "--pools", "100000"), "--distributed"], 2, tmp_path)
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ": error: " in ln]
    assert len(errors) == 1 and "N=100000" in errors[0], res.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
