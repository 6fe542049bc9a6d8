"""Content-keyed artifacts: an expensive step runs again only when its inputs change.

The one cache of the paper: cohorts, the trained ladder, embeddings and every
result table go through :func:`cached`. A step's *key* is a JSON-able dict of
everything that determines its output: its parameters, the keys of the
artifacts it reads, and a hash of the relink source files it runs. The
artifact is a folder ``<root>/<name>`` holding the step's output and
``.relink-key.json``; it is reused only when the stored key equals the new
one, otherwise rebuilt and renamed into place when complete, so an
interrupted step leaves the old artifact or none, never half of one.

Long steps that can resume (training the ladder, embedding) are built with
``resumable=True``: they work in ``<root>/.<name>.partial``, which survives an
interruption and is resumed by the next run with the same key (another key
empties it first).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

from ..io import apply_umask, atomic_dir, canonical, dumps

KEY_FILE = ".relink-key.json"
PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: modules every step depends on (contracts and I/O)
CORE_MODULES = ("__init__.py", "cohort.py", "embeddings.py", "io.py", "labels.py", "tables.py", "errors.py")

log = logging.getLogger(__name__)


def digest(obj: Any) -> str:
    """sha256 (16 hex) of a JSON-able object, key-order independent."""
    return hashlib.sha256(dumps(obj, indent=None).encode()).hexdigest()[:16]


def source_hash(parts: Iterable[str] = (), include_core: bool = True) -> str:
    """Hash of relink source files: the named subpackages/modules (relative to the package), plus the core.

    ``parts=("*",)`` hashes the whole package.
    """
    files: list[Path] = []
    names = list(parts) + (list(CORE_MODULES) if include_core else [])
    if "*" in names:
        files = sorted(PACKAGE_DIR.rglob("*.py")) + sorted(PACKAGE_DIR.rglob("*.json"))
    else:
        for name in names:
            p = PACKAGE_DIR / name
            if p.is_dir():
                files += sorted(p.rglob("*.py")) + sorted(p.rglob("*.json"))
            elif p.is_file():
                files.append(p)
            elif p.with_suffix(".py").is_file():
                files.append(p.with_suffix(".py"))
    h = hashlib.sha256()
    for f in sorted(set(files)):
        if "__pycache__" in f.parts:
            continue
        h.update(f.relative_to(PACKAGE_DIR).as_posix().encode() + b"\x00")
        h.update(f.read_bytes() + b"\x00")
    return h.hexdigest()[:16]


def stored_key(path: Path) -> dict[str, Any] | None:
    f = Path(path) / KEY_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except ValueError:
        return None


def cached(root: str | os.PathLike, name: str, key: dict[str, Any], build: Callable[[Path], Any], force: bool = False,
           resumable: bool = False) -> Path:
    """Return ``<root>/<name>``, building it with ``build(folder)`` unless its stored key matches ``key``.

    ``build`` fills the folder it is given. With ``resumable`` that folder is
    ``<root>/.<name>.partial`` and outlives an interrupted build (see the module docstring).
    """
    path = Path(root) / name
    key = canonical(key)
    if not force and stored_key(path) == key:
        log.info("reusing %s", name)
        return path
    log.info("building %s", name)
    if not resumable:
        with atomic_dir(path) as tmp:
            build(tmp)
            (tmp / KEY_FILE).write_text(dumps(key, indent=1) + "\n")
        return path
    partial = Path(root) / f".{name}.partial"
    marker = Path(root) / f".{name}.partial-key.json"  # beside it: the builder owns the folder's contents
    if partial.exists() and (force or not marker.is_file() or json.loads(marker.read_text()) != key):
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    marker.write_text(dumps(key, indent=1) + "\n")
    build(partial)
    marker.unlink()
    (partial / KEY_FILE).write_text(dumps(key, indent=1) + "\n")
    apply_umask(partial)
    if path.exists():
        shutil.rmtree(path)
    os.replace(partial, path)
    return path


def artifact_id(path: str | os.PathLike) -> str:
    """A short id for an artifact: the digest of its stored key (what downstream keys depend on)."""
    key = stored_key(Path(path))
    if key is None:
        raise FileNotFoundError(f"not a cached artifact: {path}")
    return digest(key)
