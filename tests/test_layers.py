"""The layer rule of relink/__init__.py holds: import-linter's layers contract (pyproject.toml)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from relink.provenance import REPO_ROOT


def test_imports_point_one_way():
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists() and shutil.which("lint-imports") is None:
        pytest.fail("import-linter is not installed (it is in the test extra: pip install -e '.[test]')")
    # grimp reads the source tree; an editable install's import hook is not a path it can walk.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    run = subprocess.run([str(exe) if exe.exists() else "lint-imports", "--no-cache"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def test_code_cites_only_files_inside_the_repository():
    """The design lives in docs/design.md; code and tests never point at a file outside the repository."""
    assert (REPO_ROOT / "docs" / "design.md").is_file()
    outside = []
    for folder in ("src", "tests", "benchmarks", "notebooks"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            text = path.read_text(errors="replace")
            if any(mark in text for mark in ("DESIGN" + ".md", "../" + "shared")):
                outside.append(str(path.relative_to(REPO_ROOT)))
    assert outside == [], outside


def test_the_retrieval_package_and_its_engine_have_layers_of_their_own():
    """The contract reaches inside retrieval: a module added there or to the engine must be given a layer."""
    import tomllib

    contracts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    inner = {c["containers"][0]: c for c in contracts if c["type"] == "layers" and c.get("containers") != ["relink"]}
    assert {"relink.retrieval", "relink.retrieval.engine"} <= set(inner)
    assert all(inner[name].get("exhaustive") for name in ("relink.retrieval", "relink.retrieval.engine"))
    top = [layer.split(" : ") for layer in inner["relink.retrieval"]["layers"]]
    assert top.index(["audit"]) < next(i for i, layer in enumerate(top) if "engine" in layer)
