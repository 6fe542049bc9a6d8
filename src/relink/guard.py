"""The output guard: a command declares what it reads and what it writes once; nothing else is written.

Every command calls :func:`claim` before any work. The rule, for every command:

* two outputs never name the same path, and no input is given twice;
* no output path (side files and work folder included) is, lies inside or holds an input, whatever
  ``--overwrite`` says;
* every path written is absent, this command's own earlier output, or (with ``--overwrite``) of the
  right kind; a work folder must be a relink work folder, since it is emptied when the key changes;
* a symbolic link at an output is never written through: with ``--overwrite`` the link is replaced.

Paths are compared as they resolve on disk, so a link or a ``..`` does not hide an input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence, Union

from .errors import RelinkError
from .io import claim_output

PathLike = Union[str, os.PathLike]
WORK_MARKERS = ("manifest.json", "ladder.json")  # what a relink work folder holds (relink.workdir, ladders)


@dataclass(frozen=True)
class Output:
    """One output of a command: ``path`` (a ``"file"`` or a ``"dir"``) given by ``flag``, the ``sides``
    written beside it, and its ``work`` folder (``None``: none)."""

    flag: str
    path: Path
    kind: str = "file"
    sides: tuple[Path, ...] = ()
    work: Path | None = None

    def paths(self) -> Iterator[tuple[Path, str]]:
        """Every path this output writes, with its kind."""
        yield Path(self.path), self.kind
        for side in self.sides:
            yield Path(side), "file"
        if self.work is not None:
            yield Path(self.work), "dir"


def _landing(p: Path) -> Path:
    """Where a write to ``p`` lands: its folder resolved, its last part not followed (a link there is
    replaced, not written through)."""
    return Path(os.path.realpath(p.parent)) / p.name


def _forms(p: Path) -> set[Path]:
    return {_landing(p), Path(os.path.realpath(p))}


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _inputs(inputs: Iterable[tuple[str, PathLike | Sequence[PathLike] | None]]) -> list[tuple[str, Path]]:
    out = []
    for flag, value in inputs:
        values = value if isinstance(value, (list, tuple)) else [value]
        out.extend((flag, Path(v)) for v in values if v is not None and str(v) != "")
    return out


def check_inputs(inputs: Iterable[tuple[str, PathLike | Sequence[PathLike] | None]]) -> list[tuple[str, Path]]:
    """The inputs as ``(flag, path)``; refused when one flag names the same path twice."""
    listed = _inputs(inputs)
    seen: dict[tuple[str, Path], Path] = {}
    for flag, p in listed:
        key = (flag, Path(os.path.realpath(p)))
        if key in seen:
            same = "" if str(seen[key]) == str(p) else f" (as {seen[key]})"
            raise RelinkError(f"{flag} {p} is given twice{same}; give each input once")
        seen[key] = p
    return listed


def keep_apart(outputs: Sequence[Output], inputs: Iterable[tuple[str, PathLike | Sequence[PathLike] | None]],
               overwrite_flag: bool = True) -> None:
    """Refuse an output path that is an input, lies inside an input folder or holds an input
    (``overwrite_flag``: the command has an ``--overwrite``, which the message says does not help)."""
    listed = _inputs(inputs)
    even = ", even with --overwrite" if overwrite_flag else ""
    for o in outputs:
        for p, kind in o.paths():
            what = f"{o.flag} {o.path}" if p == Path(o.path) else f"{o.flag} {o.path} (its {p.name})"
            for flag, q in listed:
                for rp in _forms(p):
                    for rq in _forms(q):
                        if rp == rq:
                            how = "is"
                        elif _within(rp, rq):
                            how = "lies inside"
                        elif kind == "dir" and _within(rq, rp):
                            how = "holds"
                        else:
                            continue
                        raise RelinkError(f"{what} {how} {flag} {q}: an output never replaces or enters an input"
                                          f"{even}; choose another {o.flag}")


def _distinct(outputs: Sequence[Output]) -> None:
    seen: dict[Path, str] = {}
    for o in outputs:
        for p, _ in o.paths():
            for key in _forms(p):
                if key in seen and seen[key] != o.flag:
                    raise RelinkError(f"{seen[key]} and {o.flag} must name different files (both write {p})")
            for key in _forms(p):
                seen.setdefault(key, o.flag)
    # a folder output never holds another output (a study folder inside a release folder would be released)
    for o in outputs:
        if o.kind != "dir":
            continue
        for other in outputs:
            if other.flag == o.flag:
                continue
            for q, _ in other.paths():
                if any(_within(a, b) for a in _forms(q) for b in _forms(Path(o.path))):
                    raise RelinkError(f"{other.flag} {other.path} lies inside {o.flag} {o.path}; "
                                      f"choose a {other.flag} outside it")


def is_work_folder(work: Path, markers: Iterable[PathLike] = WORK_MARKERS) -> bool:
    """Whether ``work`` may be emptied as relink's own: a real folder holding one of ``markers`` (names in it, or
    paths) or nothing (:class:`relink.workdir.KeyedWork` applies the same rule)."""
    return work.is_dir() and not work.is_symlink() and (
        any((work / m).is_file() for m in markers) or not any(work.iterdir()))


def _claim_work(o: Output) -> None:
    work = Path(o.work)
    if (work.exists() or work.is_symlink()) and not is_work_folder(work):
        raise RelinkError(f"{o.flag} {o.path}: {work} exists and is not a relink work folder (where an interrupted "
                          f"run keeps its finished parts); move it away or choose another {o.flag}")


def claim(owner: str, outputs: Sequence[Output | None],
          inputs: Iterable[tuple[str, PathLike | Sequence[PathLike] | None]] = (),
          overwrite: bool | None = False) -> list[Path]:
    """Check every output of ``relink owner`` against the rule above; return the output paths
    (``overwrite=None``: the command has no ``--overwrite`` flag)."""
    outs = [o for o in outputs if o is not None]
    listed = check_inputs(inputs)
    _distinct(outs)
    keep_apart(outs, listed, overwrite_flag=overwrite is not None)
    for o in outs:
        claim_output(o.path, o.kind, owner=owner, overwrite=overwrite, flag=o.flag)
        for side in o.sides:
            claim_output(side, "file", owner=owner, overwrite=overwrite, flag=o.flag)
        if o.work is not None:
            _claim_work(o)
    return [Path(o.path) for o in outs]


def existing_path(spec: str | None) -> str | None:
    """A model spec when it names a file or folder on disk (an input to keep apart), else ``None``."""
    if not spec:
        return None
    for candidate in (spec, spec.split(":", 1)[-1] if ":" in spec else None):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def set_models(flag: str, folders) -> list[tuple[str, str | None]]:
    """The local model each EmbeddingSet folder's ``meta.json`` names, as inputs (``"FLAG (its model)"``): a
    command that loads that model must not write into it. Sets without a readable ``meta.json`` name none."""
    import json

    out = []
    for folder in folders if isinstance(folders, (list, tuple)) else [folders]:
        try:
            meta = json.loads((Path(folder) / "meta.json").read_text())
        except (OSError, ValueError, UnicodeDecodeError, TypeError):
            continue
        model = meta.get("model") if isinstance(meta, dict) else None
        if isinstance(model, str):
            out.append((f"{flag} (its model)", existing_path(model)))
    return out
