"""Provenance stamped into every result: what code, which packages, which inputs (never a user, host
or absolute path: the stamp may be published)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__

PACKAGES = ("relink", "torch", "open_clip_torch", "opacus", "faiss-cpu", "numpy", "scipy", "scikit-learn", "pandas")
REPO_ROOT = Path(__file__).resolve().parents[2]


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """The checked-out commit (with ``-dirty`` when the tree has changes), or ``None``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def stamp(**extra: Any) -> dict[str, Any]:
    """A provenance record: relink version, commit, package versions, plus ``extra``."""
    return {"relink_version": __version__, "commit": git_commit(), "packages": package_versions(), **extra}


def file_fingerprint(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 (first 16 hex digits) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()[:16]
