"""What a model was trained on: the record every checkpoint's ``relink.json`` carries as ``trained_on``.

A DP guarantee on retrained heads covers their training *given* a start and a trunk; if either was
learned without DP on the same private rows, the release is not DP for them. So each model says what
it saw: ``"random-init"``, ``"public:<name>"`` (declared by whoever publishes the weights) or
``"private:<fingerprint>"`` (:func:`rows_fingerprint` of its pair ids; never the rows). ``None``: not
recorded, so not declared independent of anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

RANDOM_INIT = "random-init"
PUBLIC = "public:"
PRIVATE = "private:"


def rows_fingerprint(pair_ids: Iterable[object]) -> str:
    """sha256 (16 hex) of the sorted pair ids: the same rows give the same fingerprint, in any order."""
    h = hashlib.sha256()
    h.update("\x1f".join(sorted(str(p) for p in pair_ids)).encode())
    return h.hexdigest()[:16]


def private(pair_ids: Iterable[object]) -> str:
    """The record of a model trained on these rows."""
    return PRIVATE + rows_fingerprint(pair_ids)


def is_independent(record: str | None) -> bool:
    """Whether a record declares the weights independent of any private rows."""
    return isinstance(record, str) and (record == RANDOM_INIT or (record.startswith(PUBLIC) and len(record) > len(PUBLIC)))


def is_valid(record: object) -> bool:
    """A well-formed record (what ``--init`` and a checkpoint's ``relink.json`` may hold)."""
    return isinstance(record, str) and (is_independent(record) or (record.startswith(PRIVATE) and len(record) > len(PRIVATE)))


#: the record of a ``relink.json`` that exists but cannot be read: treated as private, so that a damaged record
#: never lets a declaration of independence through
UNREADABLE = PRIVATE + "unreadable-record"


def of_folder(folder: str | os.PathLike) -> str | None:
    """``trained_on`` of a checkpoint folder's ``relink.json``: ``None`` when it has none (absent file, or a file
    without the field); :data:`UNREADABLE` when the file or its record is malformed."""
    f = Path(folder) / "relink.json"
    if not f.is_file():
        return None
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return UNREADABLE
    if not isinstance(meta, dict):
        return UNREADABLE
    record = meta.get("trained_on")
    if record is None:
        return None
    return record if is_valid(record) else UNREADABLE


def of_spec(spec: str) -> str | None:
    """What a model spec's weights were trained on, as far as it says (a local folder or weights file:
    the ``relink.json`` there)."""
    from .registry import parse_spec

    name, pretrained = parse_spec(spec)
    if name.startswith("local-dir:"):
        return of_folder(name[len("local-dir:"):])
    if name.startswith("hf-hub:"):
        return PUBLIC + name
    if pretrained is None:
        return RANDOM_INIT
    if os.path.isfile(pretrained):
        return of_folder(Path(pretrained).parent)
    if os.sep in pretrained:
        return None
    return f"{PUBLIC}{name}:{pretrained}"
