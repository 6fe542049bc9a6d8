"""The paper's one cache: an expensive step runs again only when its inputs change.

A step's *key* is a JSON-able dict of everything that determines its output: its parameters, the keys of
the artifacts it reads, and a hash of the relink source files it runs. The artifact is the keyed folder
``<root>/<name>`` (:func:`relink.workdir.build_keyed`), reused only while its stored key equals the key.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from ..io import canonical, dumps
from ..workdir import ARTIFACT_KEY as KEY_FILE, build_keyed, read_key

PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: modules every step depends on (contracts and I/O)
CORE_MODULES = ("__init__.py", "cohort.py", "embeddings", "io.py", "labels.py", "tables.py", "errors.py")

log = logging.getLogger(__name__)


def digest(obj: Any) -> str:
    """sha256 (16 hex) of a JSON-able object, key-order independent."""
    return hashlib.sha256(dumps(obj, indent=None).encode()).hexdigest()[:16]


def source_hash(parts: Iterable[str] = ()) -> str:
    """Hash of relink source files: the named subpackages/modules (relative to the package; ``"*"``: all of
    it), plus the core."""
    files: list[Path] = []
    for name in list(parts) + list(CORE_MODULES):
        p = PACKAGE_DIR if name == "*" else PACKAGE_DIR / name
        if p.is_dir():
            files += sorted(p.rglob("*.py")) + sorted(p.rglob("*.json"))
        elif p.is_file():
            files.append(p)
        elif p.with_suffix(".py").is_file():
            files.append(p.with_suffix(".py"))
        else:  # a part that hashes nothing would let its edits reuse stale artifacts
            raise ValueError(f"source_hash: relink has no module or package {name!r}")
    h = hashlib.sha256()
    for f in sorted(set(files)):
        if "__pycache__" in f.parts:
            continue
        h.update(f.relative_to(PACKAGE_DIR).as_posix().encode() + b"\x00")
        h.update(f.read_bytes() + b"\x00")
    return h.hexdigest()[:16]


def stored_key(path: Path) -> dict[str, Any] | None:
    return read_key(Path(path) / KEY_FILE)


def cached(root: str | os.PathLike, name: str, key: dict[str, Any], build: Callable[[Path], Any], force: bool = False,
           resumable: bool = False) -> Path:
    """``<root>/<name>``, built with ``build(folder)`` unless its stored key matches ``key``."""
    path = Path(root) / name
    log.info("%s %s", "reusing" if not force and stored_key(path) == canonical(key) else "building", name)
    build_keyed(path, key, build, force=force, resumable=resumable)
    return path


def artifact_id(path: str | os.PathLike) -> str:
    """A short id for an artifact: the digest of its stored key (what downstream keys depend on)."""
    key = stored_key(Path(path))
    if key is None:
        raise FileNotFoundError(f"not a cached artifact: {path}")
    return digest(key)
