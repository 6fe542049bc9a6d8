"""One dependency list: environment.yml (conda, Binder) and the Makefile's torch pins say what
pyproject.toml says, so the three cannot drift apart."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import yaml
from packaging.requirements import Requirement

from relink.provenance import REPO_ROOT


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _key(req: str) -> tuple[str, str]:
    r = Requirement(req)
    return re.sub(r"[-_.]+", "-", r.name).lower(), str(r.specifier)


def test_environment_yml_pins_exactly_what_pyproject_declares():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    wanted = {_key(r) for r in project["dependencies"]}
    wanted |= {_key(r) for name, reqs in extras.items() if name != "all" for r in reqs}
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert {_key(r) for r in pip} == wanted
    assert len(pip) == len(wanted)  # each once
    # every extra is in `all`, so `make setup` (`.[all]`) and Binder install the same set
    assert set(re.search(r"\[(.*)\]", extras["all"][0]).group(1).split(",")) == set(extras) - {"all"}


def test_generator_check_passes_and_catches_a_drift(tmp_path):
    check = [sys.executable, str(REPO_ROOT / "tools" / "environment_yml.py"), "--check"]
    assert subprocess.run(check, capture_output=True).returncode == 0
    # the same check against a pyproject that gained a dependency fails
    sys.path.insert(0, str(REPO_ROOT / "tools"))
    try:
        import environment_yml
    finally:
        sys.path.pop(0)
    data = _pyproject()
    data["project"]["dependencies"] = [*data["project"]["dependencies"], "rich>=13"]
    assert environment_yml.render(data) != (REPO_ROOT / "environment.yml").read_text()


def test_the_makefile_installs_pyprojects_torch_pair():
    make = (REPO_ROOT / "Makefile").read_text()
    pins = re.search(r"^TORCH_PINS\s*:=\s*(.+)$", make, flags=re.M).group(1).split()
    declared = {_key(r) for r in _pyproject()["project"]["dependencies"]}
    assert {_key(p) for p in pins} <= declared and {k for k, _ in map(_key, pins)} == {"torch", "torchvision"}
