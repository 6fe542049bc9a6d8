"""Writing outputs: atomically, with the user's permissions, never over a file that is not ours.

Temporaries sit beside the destination as ``.NAME.<pid>.<random>.tmp`` (the pid tells a killed
writer's leftovers from a live one's) and get the umask's permissions, not ``mkstemp``'s 0600: a
shared project folder must read them. A folder output is marked with :func:`mark_output`; tables,
manifests and reports are recognised by the provenance they carry.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import RelinkError

OUTPUT_MARKER = ".relink-output.json"
#: folders written before :func:`mark_output` existed, recognised by the file each command writes
LEGACY_DIR_MARKERS = {"embed": "meta.json", "synth": "synth.json", "train": "ladder.json"}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary file path next to ``path`` (same suffix: writers choose a format by it);
    rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_umask())
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def apply_umask(root: Path) -> None:
    """Give a freshly written tree the umask's permissions (writers inside may have used mkstemp)."""
    mask = _umask()
    os.chmod(root, 0o777 & ~mask)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o777 & ~mask)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, (0o777 if os.access(p, os.X_OK) and os.stat(p).st_mode & 0o100 else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; it replaces ``path`` on success.

    An existing ``path`` is renamed aside (``.NAME.<pid>.old``) until the new one is in place; the
    next :func:`claim_output` puts it back if the run was killed in between.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        apply_umask(tmp)
        if path.exists() or path.is_symlink():
            old = path.with_name(f"{_tmp_prefix(path)}old")
            if old.exists():
                _remove(old)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove what dead writers of ``path`` left beside it (an ``.old`` copy goes back when ``path``
    is missing); return what was removed."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.(.*)$")
    removed = []
    for entry in sorted(parent.iterdir()):
        m = pattern.match(entry.name)
        if not m or _alive(int(m.group(1))):
            continue
        if m.group(2) == "old" and not (path.exists() or path.is_symlink()):
            os.replace(entry, path)
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def mark_output(folder: str | os.PathLike, owner: str, **extra: Any) -> None:
    """Mark ``folder`` (usually the temporary folder about to be renamed) as ``relink owner``'s output."""
    write_json(Path(folder) / OUTPUT_MARKER, {"relink_output": owner, **extra})


def output_owner(path: str | os.PathLike) -> str | None:
    """Which relink command wrote ``path``, or ``None`` (a symbolic link is never an output)."""
    path = Path(path)
    if path.is_symlink():
        return None
    if path.is_dir():
        marker = path / OUTPUT_MARKER
        if marker.is_file():
            try:
                return str(json.loads(marker.read_text()).get("relink_output"))
            except (ValueError, OSError, AttributeError):
                return None
        for owner, name in LEGACY_DIR_MARKERS.items():
            if (path / name).is_file():
                return owner
        return None
    if not path.is_file():
        return None
    try:
        return _file_owner(path)
    except Exception:  # any unreadable or foreign file is simply not ours
        return None


def _file_owner(path: Path) -> str | None:
    ext = path.suffix.lower()
    if ext == ".parquet":
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
        if b"relink.output" in meta:  # a cohort manifest names the command that wrote it
            return meta[b"relink.output"].decode()
        if b"relink.image_root" in meta:
            return "cohort"
        prov = json.loads(meta.get(b"provenance", b"{}"))
        return prov.get("command") if isinstance(prov, dict) else None
    if ext == ".csv":
        side = path.with_name(path.name + ".provenance.json")
        prov = json.loads(side.read_text()) if side.is_file() else {}
        return prov.get("command") if isinstance(prov, dict) else None
    if ext == ".json":
        with open(path, "rb") as fh:
            obj = json.loads(fh.read(64 << 20))
        if not isinstance(obj, dict):
            return None
        if "relink_output" in obj:
            return str(obj["relink_output"])
        if isinstance(obj.get("command"), str) and ("relink_version" in obj or path.name.endswith(".provenance.json")):
            # a table's provenance side file
            return obj["command"]
        prov = obj.get("provenance")
        return prov.get("command") if isinstance(prov, dict) else None
    if ext in (".html", ".htm"):
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace")
        m = re.search(r'<meta name="generator" content="relink ([a-z-]+)', head)
        return m.group(1) if m else None
    return None


def claim_output(path: str | os.PathLike, kind: str = "file", owner: str = "", overwrite: bool | None = False,
                 flag: str = "--out") -> Path:
    """Check that ``path`` (``kind`` ``"file"`` or ``"dir"``) may be written as ``owner``'s output;
    clean leftovers; return it.

    An existing path must be ``owner``'s earlier output, an empty folder, or ``overwrite``;
    ``overwrite=None``: the command has no ``--overwrite`` flag to offer.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise RelinkError(f"{flag} {path}: give a {'file' if kind == 'file' else 'folder'} name")
    clean_leftovers(path)
    offer = ", or pass --overwrite to replace it" if overwrite is not None else ""
    if path.is_symlink() and not path.exists():
        raise RelinkError(f"{flag} {path} is a broken symbolic link; remove it or choose another {flag}")
    if path.is_symlink() and not overwrite:
        raise RelinkError(f"{flag} {path} is a symbolic link (relink never writes through one); choose another "
                          f"{flag}{offer.replace('replace it', 'replace the link itself')}")
    if path.exists():
        if kind == "file" and path.is_dir():
            raise RelinkError(f"{flag} {path} is a folder; give a file path")
        if kind == "dir" and not path.is_dir():
            raise RelinkError(f"{flag} {path} is a file; give a folder path (relink does not replace a file with a folder)")
        empty = kind == "dir" and not any(path.iterdir())
        if not (empty or overwrite or output_owner(path) == owner):
            what = "folder" if kind == "dir" else "file"
            raise RelinkError(f"{flag} {path}: an existing {what} that is not a relink {owner} output; "
                              f"choose another {flag}{offer}")
    _check_writable(path.parent, flag)
    return path


def _check_writable(folder: Path, flag: str) -> None:
    """The nearest existing ancestor of ``folder`` must be a folder we can create entries in."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise RelinkError(f"{flag}: {probe} is not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".relink-write-check.", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise RelinkError(f"{flag}: cannot write in {probe} ({exc.strerror or exc.__class__.__name__})") from None


@contextlib.contextmanager
def writing(path: str | os.PathLike, flag: str = "--out") -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into one line naming it (disk full, permissions, ...)."""
    try:
        yield
    except OSError as exc:
        raise RelinkError(f"{flag} {path}: cannot write ({exc.strerror or exc.__class__.__name__})") from None


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` that ``json.dumps(allow_nan=False)`` accepts: NaN/inf -> None, numpy -> Python."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def canonical(obj: Any) -> Any:
    """``obj`` as it reads back from key-sorted JSON: the form to compare and hash stored keys in."""
    return json.loads(json.dumps(json_safe(obj), sort_keys=True, allow_nan=False))


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Valid, key-sorted JSON text (see :func:`json_safe`)."""
    return json.dumps(json_safe(obj), indent=indent, sort_keys=True, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted, valid JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(dumps(obj) + "\n")


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write one ``.npy`` array atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
