"""The README's custodian block runs as written: it is extracted from README.md and run, command by command,
through the real console script on a small synthetic MIMIC-CXR layout (IMAGES and REPORTS), with a small
architecture of random weights as SPEC; every step succeeds (the report's gate may exit 3) and writes its output."""

import json
import re
import shlex
from pathlib import Path

import pytest

from relink import cli

ROOT = Path(__file__).resolve().parents[1]


def _block() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## For data custodians"):]
    body = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in body.strip().splitlines()]


@pytest.mark.slow
def test_the_custodian_block_runs_as_written(tmp_path, monkeypatch, capsys):
    lines = _block()
    assert [line[1] for line in lines] == ["cohort", "embed", "audit", "report"]
    assert cli.main(["synth", "--layout", "mimic-cxr", "--out", str(tmp_path / "mimic"), "--patients", "90",
                     "--seed", "5", "--size", "32", "--splits", "0.2,0.1,0.7"]) == 0
    subst = {"IMAGES": str(tmp_path / "mimic" / "mimic-cxr-jpg"), "REPORTS": str(tmp_path / "mimic" / "mimic-cxr-reports"),
             "SPEC": "relink-vit-tiny"}
    monkeypatch.chdir(tmp_path)
    for line in lines:
        assert line[0].endswith("relink")
        args = [subst.get(a, a) for a in line[1:]]
        rc = cli.main(args)
        printed = capsys.readouterr()
        assert rc in ((0, 3) if args[0] == "report" else (0,)), (args[0], printed.err)
        assert "Traceback" not in printed.err and "_" not in re.findall(r"--[\w-]+", printed.err).__str__()
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["threat_model"]["split"] == "test" and doc["record"]["release_name"] == "chest images 2026"
    assert (tmp_path / "audit.csv").is_file() and (tmp_path / "report.html").is_file()


def _python_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## For data custodians"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_notebook_block_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README's Python lines, run as written on an EmbeddingSet written by hand at emb/ (the format the README
    says relink accepts): the front doors audit, report and write, and nothing else is needed."""
    pytest.importorskip("relink.api.audit", reason="relink.audit (the audit's front door) is not in this tree")
    from helpers.report import write_set

    code = _python_block()
    lines = [line for line in code.strip().splitlines() if line.strip()]
    assert lines[0] == "import relink" and len(lines) <= 6  # the import and five calls
    write_set(tmp_path / "emb", n=600, noise=1.0, seed=9)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    doc = json.loads((tmp_path / "report.json").read_text())
    assert printed[0] == doc["verdict"]["level"] and printed[1] == doc["headline"]["sentence"]
    assert doc["threat_model"]["split"] == "test" and doc["record"]["release_name"] == "chest images 2026"
    assert doc["threat_model"]["released"] == 5000 and (tmp_path / "report.html").is_file()
