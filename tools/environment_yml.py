"""Write environment.yml (conda, Binder) from pyproject.toml: one dependency list, kept in pyproject.

The package's runtime dependencies and every extra that `.[all]` names go into the pip section,
in pyproject's order and with its pins, so that Binder installs exactly what `make setup`
installs. torch and torchvision stay in the same pip step as open_clip_torch (installing
open_clip_torch alone upgrades torch).

    python tools/environment_yml.py          # rewrite environment.yml
    python tools/environment_yml.py --check  # exit 1 if environment.yml differs from pyproject.toml
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = "3.11"

HEADER = """\
# GENERATED from pyproject.toml by tools/environment_yml.py: do not edit by hand
# (`make environment.yml` rewrites it; tests/test_environment.py fails when the two differ).
# conda / Binder environment for relink. Binder (repo2docker) installs this file before the
# repository is copied in, so postBuild installs the package itself (`pip install --no-deps -e .`).
# torch comes from the same registry as every other pin: the pinned torch/torchvision pair is the one
# known to import together, and a different build of either breaks open_clip's import. It is the
# package index's Linux build, which carries CUDA libraries (about 3 GB of image disk and build time;
# on a CPU they are not used). A CPU-only build is deliberately not chosen: the package index has none
# of this pair, the CPU-only builds live in a separate wheel index or a conda channel's build that this
# project's own machines cannot reach and so cannot check, and the one CPU-only build checked here
# (2.13.0+cpu) fails to import beside the index's torchvision, which would break every Binder launch.
"""


def requirements(pyproject: dict) -> list[str]:
    """Runtime dependencies, then each extra that the ``all`` extra names, in pyproject's order."""
    project = pyproject["project"]
    name = project["name"]
    extras = project.get("optional-dependencies", {})
    out = list(project["dependencies"])
    for ref in extras.get("all", []):
        match = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", ref.replace(" ", ""))
        if not match:
            raise ValueError(f"pyproject.toml: the 'all' extra entry {ref!r} is not {name}[...]")
        for extra in match.group(1).split(","):
            out += [r for r in extras[extra] if r not in out]
    return out


def render(pyproject: dict) -> str:
    lines = [HEADER.rstrip("\n"), f"name: {pyproject['project']['name']}", "channels:", "  - conda-forge",
             "dependencies:", f"  - python={PYTHON}", "  - pip", "  - pip:"]
    lines += [f'      - "{req}"' for req in requirements(pyproject)]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render(tomllib.loads((ROOT / "pyproject.toml").read_text()))
    target = ROOT / "environment.yml"
    if "--check" in argv:
        if target.read_text() != text:
            print("environment.yml differs from pyproject.toml: run `python tools/environment_yml.py`",
                  file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
