"""``relink.report``, the front door: the same report as the command, lazily exported, writes guarded, notes as data."""

import json
import subprocess
import sys

import pandas as pd
import pytest

import relink
from relink.errors import RelinkError
from relink.provenance import REPO_ROOT
from helpers.report import report_args, run, write_set


@pytest.fixture(scope="module")
def emb(tmp_path_factory):
    return write_set(tmp_path_factory.mktemp("api") / "emb", n=300, noise=1.2, seed=21)


def _fresh(code: str) -> str:
    env_path = str(REPO_ROOT / "src")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_import_relink_stays_cheap_and_the_front_doors_resolve():
    loaded = _fresh("import sys, relink; print(sorted(m for m in ('pandas', 'numpy', 'torch', 'relink.api', "
                    "'relink.report') if m in sys.modules))")
    assert loaded == "[]"
    # relink.report is the front door and the sub-package, whichever is imported first
    for first in ("import relink.report.build", "import relink"):
        out = _fresh(f"{first}\nimport relink, relink.report.build as b\n"
                     "from relink.api.report import report\n"
                     "print(callable(relink.report), relink.report.build is b, relink.ReportSpec.__name__)")
        assert out == "True True ReportSpec"
    assert {"audit", "report", "mitigate", "probe", "embed", "train_heads"} <= set(dir(relink))
    with pytest.raises(AttributeError):
        relink.no_such_door  # noqa: B018


def test_the_front_door_gives_the_command_s_report(emb, tmp_path, capsys):
    js = tmp_path / "cli.json"
    rc, _, err = run(report_args(emb, tmp_path / "cli.html", "--json", str(js), "--split", "all"), capsys)
    assert rc == 0, err
    result = relink.report(str(emb), relink.ReportSpec(attacker_pools=(100,), n_boot=100), split="all")
    assert capsys.readouterr().out == ""  # a front door prints nothing
    cli = json.loads(js.read_text())
    # the report id hashes the whole document but its time: the same inputs, the same report
    assert result.document["record"]["report_id"] == cli["record"]["report_id"]
    assert json.loads(result.json)["verdict"] == cli["verdict"] and result.verdict == cli["verdict"]["level"]
    assert result.decision == cli["verdict"]["decision"]


def test_writes_go_through_the_output_guard(emb, tmp_path):
    result = relink.report(str(emb), relink.ReportSpec(attacker_pools=(100,), n_boot=100), split="all")
    before = sorted(p.name for p in emb.iterdir())
    with pytest.raises(RelinkError, match="an output never replaces or enters an input"):
        result.write(emb / "r.html")
    with pytest.raises(RelinkError, match="must be a .json file"):
        result.write(tmp_path / "r.html", json=tmp_path / "r.txt")
    assert sorted(p.name for p in emb.iterdir()) == before and not (tmp_path / "r.html").exists()
    written = result.write(tmp_path / "r.html", json=tmp_path / "r.json", audit=tmp_path / "t.csv")
    assert [p.name for p in written] == ["r.html", "r.json", "t.csv"]
    assert (tmp_path / "r.html").read_text() == result.html


def test_notes_are_data(tmp_path):
    bare = write_set(tmp_path / "bare", n=300, noise=1.2, seed=22, labels=False)
    result = relink.report(bare, relink.ReportSpec(attacker_pools=(100,), n_boot=100), confident=pd.DataFrame())
    assert any("no CheXpert labels" in n for n in result.notes)
    assert any("confident re-links were not computed" in n for n in result.notes)
    assert all(isinstance(n, str) and "/" not in n for n in result.notes)  # sentences, no path
