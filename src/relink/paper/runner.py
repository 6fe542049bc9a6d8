"""Execute chapters with papermill (only those whose inputs changed), then build the book.

A chapter's inputs (:func:`chapter_inputs`) and provenance are stamped into the executed notebook's
metadata under ``relink``; a prose-only change rebuilds the book without running a notebook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import RelinkError
from ..io import atomic_path, canonical
from ..provenance import REPO_ROOT, file_fingerprint, stamp
from .cache import artifact_id, digest, source_hash
from .chapters import BOOK_DIR, CHAPTER_DIR, Chapter, select
from .profiles import Profile
from .stages import default_root


def notebook_source_hash(chapter: Chapter) -> str:
    if not chapter.source.is_file():
        raise RelinkError(f"chapter source not found: {chapter.source}")
    return digest(chapter.source.read_text())


def chapter_inputs(chapter: Chapter, profile: Profile, results: dict[str, Path]) -> dict[str, Any]:
    """Everything a chapter's output depends on, as canonical JSON (a stored copy compares equal)."""
    from .results import with_upstream

    return canonical({
        "notebook": notebook_source_hash(chapter),
        "relink_source": source_hash(("*",)),
        "profile": profile.record(),
        "results": {name: artifact_id(results[name]) for name in with_upstream(chapter.results)},
        "files": {name: _file_id(name) for name in chapter.inputs},
    })


def _file_id(name: str) -> str | None:
    path = REPO_ROOT / name
    return file_fingerprint(path) if path.is_file() else None


def stored_inputs(chapter: Chapter) -> dict[str, Any] | None:
    """The ``relink.inputs`` recorded in an executed chapter, or ``None``."""
    if not chapter.output.is_file():
        return None
    try:
        nb = json.loads(chapter.output.read_text())
    except ValueError:
        return None
    return nb.get("metadata", {}).get("relink", {}).get("inputs")


def _to_ipynb(chapter: Chapter, dest: Path) -> None:
    import jupytext

    nb = jupytext.read(chapter.source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    jupytext.write(nb, dest, fmt="ipynb")


def execute_chapter(chapter: Chapter, profile: Profile, results: dict[str, Path], force: bool = False,
                    scan: Callable[[Path], list] | None = None) -> bool:
    """Run one chapter into ``book/chapters``; whether it was executed (False: up to date). ``scan``
    (credentialed profiles) checks it before it is put in place: a finding leaves no chapter behind."""
    import papermill as pm

    inputs = chapter_inputs(chapter, profile, results)
    if not force and stored_inputs(chapter) == inputs:
        print(f"  {chapter.stem}: up to date")
        return False
    CHAPTER_DIR.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with atomic_path(chapter.output) as out, tempfile.TemporaryDirectory() as work:
        src = Path(work) / f"{chapter.stem}.ipynb"
        _to_ipynb(chapter, src)
        # The default artifact folder is left implicit so that no local path is printed in a published page.
        root = results["_root"]
        params = {"profile": json.dumps(profile.record()),
                  "artifacts": "" if Path(root) == default_root(profile) else str(root)}
        if profile.ladder:  # the record names the rungs only; the kernel reads their specs from here
            os.environ["RELINK_LADDER"] = ",".join(profile.ladder)
        try:
            pm.execute_notebook(
                str(src), str(out), parameters=params, kernel_name="python3", cwd=str(REPO_ROOT),
                progress_bar=False, log_output=False, request_save_on_cell_execute=False,
                # the kernel's start-up and shut-down chatter would fill the log with a warning per chapter
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            )
        except pm.PapermillExecutionError as exc:
            raise RelinkError(f"chapter {chapter.stem} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}") from None
        _stamp(out, chapter, profile, inputs, results)
        findings = scan(out) if scan else []
        if findings:
            raise RelinkError(f"privacy scan: chapter {chapter.stem} contains {findings[0].kind} "
                              f"({findings[0].detail}); it was not written")
    print(f"  {chapter.stem}: executed in {time.perf_counter() - t0:.1f} s")
    return True


def _overrides(profile: Profile) -> dict[str, Any]:
    """Profile fields that differ from the named default (what the provenance lists as parameters)."""
    from .profiles import PROFILES

    base = PROFILES[profile.name].record()
    return {k: v for k, v in profile.record().items() if base.get(k) != v}


def _stamp(path: Path, chapter: Chapter, profile: Profile, inputs: dict[str, Any], results: dict[str, Path]) -> None:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for key in ("input_path", "output_path"):  # temporary paths of this machine: not for a published page
        nb.metadata.get("papermill", {}).pop(key, None)
    for cell in nb.cells:
        # papermill's injected cell repeats the profile record: readers need none of it
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    meta_files = {}
    for name in chapter.results:
        prov = results[name] / "provenance.json"
        if prov.is_file():
            meta_files[name] = json.loads(prov.read_text())
    nb.metadata["relink"] = {
        "chapter": chapter.stem,
        "inputs": inputs,
        "provenance": stamp(profile=profile.name, parameters=_overrides(profile), results=meta_files,
                            privacy_scan="passed" if profile.credentialed else "not required"),
    }
    nbformat.write(nb, path)


def build_book(strict: bool = False) -> int:
    """``jupyter-book build book/`` (strict: every page, ``-W -n --keep-going``); returns its exit code."""
    exe = Path(sys.executable).with_name("jupyter-book")
    book = BOOK_DIR.relative_to(REPO_ROOT) if BOOK_DIR.is_relative_to(REPO_ROOT) else BOOK_DIR
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", f"{book}/"]
    if strict:
        cmd[2:2] = ["--all", "-W", "-n", "--keep-going"]
    print("$ " + " ".join(cmd))
    return subprocess.run(cmd, cwd=REPO_ROOT).returncode


def run_paper(
    profile: Profile,
    chapter_names: list[str] | None = None,
    book: bool = True,
    force: bool = False,
    strict: bool = False,
    artifacts_root: str | os.PathLike | None = None,
) -> int:
    """The whole paper: cached artifacts, changed chapters, privacy scan, then the book."""
    from ..leakscan import scan_paths
    from .isolated import build_isolated
    from .leakscan import cohort_frames, result_files
    from .results import build_results

    chapters = select(chapter_names)
    needed = sorted({r for c in chapters for r in c.results})
    t0 = time.perf_counter()
    print(f"relink paper: profile {profile.name}; chapters {', '.join(c.number for c in chapters)}")
    # what is missing is built step by step in fresh processes (relink.paper.isolated), then read here
    code = build_isolated(profile, needed, Path(artifacts_root) if artifacts_root else default_root(profile))
    if code:
        return code
    results = build_results(profile, needed, artifacts_root)
    print(f"artifacts ready in {time.perf_counter() - t0:.1f} s")
    scan = None
    if profile.credentialed:
        frames = cohort_frames(profile, results)
        findings = scan_paths(result_files(results), frames, root=results["_root"])
        if findings:
            raise RelinkError(f"privacy scan: {len(findings)} result file(s) contain report text or identifiers, first: {findings[0]}")
        scan = lambda path: scan_paths([path], frames)  # noqa: E731
    for chapter in chapters:
        execute_chapter(chapter, profile, results, force=force, scan=scan)
    if not book:
        return 0
    code = build_book(strict=strict)
    print(f"relink paper: done in {time.perf_counter() - t0:.1f} s; open book/_build/html/index.html")
    return code


def staleness(chapter: Chapter) -> str | None:
    """Why the executed chapter cannot be trusted (missing, or inputs changed since), or ``None``."""
    stored = stored_inputs(chapter)
    if stored is None:
        return "not executed" if not chapter.output.is_file() else "executed without relink provenance"
    if stored.get("notebook") != notebook_source_hash(chapter):
        return "its notebook source changed since it was executed"
    if stored.get("relink_source") != source_hash(("*",)):
        return "the relink source changed since it was executed"
    return None


def book_problems(chapters: list[Chapter]) -> list[str]:
    """Every reason the executed chapters cannot make one consistent book."""
    from .profiles import PROFILES
    from .results import registry

    problems = [f"{c.stem} ({why})" for c in chapters if (why := staleness(c))]
    if problems:
        return problems
    stored = {c.stem: stored_inputs(c) for c in chapters}
    profiles = {json.dumps(s["profile"], sort_keys=True) for s in stored.values()}
    if len(profiles) > 1:
        names = sorted({s["profile"]["name"] for s in stored.values()})
        return [f"chapters come from different profiles or settings ({', '.join(names)}); re-run them together"]
    name = next(iter(stored.values()))["profile"]["name"]
    root = default_root(PROFILES[name]) / "results" if name in PROFILES else None
    for stem, s in stored.items():
        for result, rid in s.get("results", {}).items():
            folder = root / result if root else None
            if folder is not None and result in registry() and (folder / ".relink-key.json").is_file() and artifact_id(folder) != rid:
                problems.append(f"{stem} (its {result} results were rebuilt since it was executed)")
    return problems
