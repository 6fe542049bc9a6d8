"""The paper's results: one module per result, found by name, built in dependency order.

Each module here (other than :mod:`.common`) declares ``RESULT``, a :class:`Result` whose ``build(ctx,
tmp, upstream)`` writes its tables and ``provenance.json`` into ``tmp`` (``upstream``: each upstream
result's folder). Adding a result is one new module. A result's key covers the profile fields it names,
its upstream results' ids, the ladder's ids when it reads embeddings and the relink source it runs.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..cache import cached, source_hash
from ..profiles import Profile
from ..stages import Context, cohort_ids, default_root, key_id, rung_ids


@dataclass(frozen=True)
class Result:
    """One result of the paper."""

    name: str
    build: Callable[[Context, Path, dict[str, Path]], None]
    fields: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()
    reads_embeddings: bool = True
    source: tuple[str, ...] = ()  # relink subpackages/modules it runs, besides its own module and the core
    module: str = ""

    def key(self, ctx: Context, upstream_ids: dict[str, str]) -> dict[str, Any]:
        """The cache key, from declared inputs only: it never builds anything."""
        p = ctx.profile.as_dict()
        own = f"paper/results/{self.module}.py"
        return {"result": self.name, "profile": {f: p[f] for f in self.fields},
                "source": source_hash(self.source + (own, "paper/results/common.py", "paper/stages.py")),
                "cohorts": cohort_ids(ctx), "rungs": rung_ids(ctx) if self.reads_embeddings else None,
                "upstream": {name: upstream_ids[name] for name in self.upstream}}


def registry() -> dict[str, Result]:
    """Every result, in an order where each comes after the results it reads."""
    found: dict[str, Result] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        result = getattr(module, "RESULT", None)
        if isinstance(result, Result):
            found[result.name] = Result(**{**result.__dict__, "module": info.name})
    ordered: dict[str, Result] = {}

    def visit(name: str, trail: tuple[str, ...] = ()) -> None:
        if name in ordered:
            return
        if name in trail:
            raise ValueError(f"results depend on each other in a circle: {' -> '.join(trail + (name,))}")
        if name not in found:
            raise ValueError(f"result {trail[-1] if trail else '?'} reads an unknown result {name!r}")
        for up in found[name].upstream:
            visit(up, trail + (name,))
        ordered[name] = found[name]

    for name in sorted(found):
        visit(name)
    return ordered


def with_upstream(names) -> list[str]:
    """``names`` and every result they stand on, in build order."""
    reg = registry()
    want: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in reg:
            raise KeyError(f"unknown result {name!r}; results: {', '.join(reg)}")
        if name not in want:
            want.add(name)
            todo += reg[name].upstream
    return [name for name in reg if name in want]


def result_keys(ctx: Context, names) -> dict[str, dict[str, Any]]:
    """The cache key of each named result and of what it stands on, computed without building anything."""
    reg = registry()
    keys: dict[str, dict[str, Any]] = {}
    for name in with_upstream(names):
        result = reg[name]
        keys[name] = result.key(ctx, {up: key_id(keys[up]) for up in result.upstream})
    return keys


def build_results(profile: Profile, needed, artifacts_root: str | os.PathLike | None = None,
                  quiet: bool = False) -> dict[str, Path]:
    """Build (or reuse) the named results and what they stand on; returns name -> folder, plus ``_root``."""
    root = Path(artifacts_root) if artifacts_root else default_root(profile)
    ctx = Context(profile, root, progress=not quiet)
    reg = registry()
    keys = result_keys(ctx, needed)
    out: dict[str, Path] = {"_root": root}
    for name, key in keys.items():
        result = reg[name]
        upstream = {up: out[up] for up in result.upstream}
        out[name] = cached(root / "results", name, key, lambda tmp, r=result, u=upstream: r.build(ctx, tmp, u))
    return out
