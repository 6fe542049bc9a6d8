"""Build what a paper run lacks one step at a time, each step in a fresh process.

Memory a step frees is not always returned to the system, so one process that builds every step holds
the sum of their high-water marks (about 2 GB on the default profile, above a Binder session's); apart,
the run's peak is the largest step's. Each child builds one step into the shared cache, which the parent
then only reads; when every needed result is cached, nothing is spawned.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .cache import stored_key
from .profiles import Profile

#: the stages the results stand on, in order: name -> code run with ``S`` (relink.paper.stages) and ``ctx``
STAGES = {"cohorts": "S.cohorts(ctx)", "ladder": "S.ladder(ctx)",
          "embeddings (internal)": "S.role_embeddings(ctx, 'internal')",
          "embeddings (external)": "S.role_embeddings(ctx, 'external')"}


def missing_results(profile: Profile, needed, root: Path) -> list[str]:
    """The needed results (and what they stand on) whose cached key is absent or differs, in build order."""
    from ..io import canonical
    from .results import result_keys
    from .stages import Context

    keys = result_keys(Context(profile, root, progress=False), needed)
    return [name for name, key in keys.items() if stored_key(root / "results" / name) != canonical(key)]


#: how a result's step is named (a result may share a stage's name: the result ``cohorts`` is not the stage)
RESULT = "result "


def step_code(record: str, root: Path, step: str) -> str:
    """The Python a child runs for one step: a stage of :data:`STAGES`, or ``"result NAME"``."""
    head = (f"from pathlib import Path; from relink.paper.profiles import Profile; "
            f"from relink.paper import stages as S; p = Profile.from_record({record!r}); ")
    if step.startswith(RESULT):
        name = step[len(RESULT):]
        return head + f"from relink.paper.results import build_results; build_results(p, [{name!r}], {str(root)!r})"
    if step in STAGES:
        return head + f"ctx = S.Context(p, Path({str(root)!r})); {STAGES[step]}"
    raise ValueError(f"unknown step {step!r}")


def steps(profile: Profile, needed, root: Path) -> list[str]:
    """Every stage (cheap when cached), then each missing result (``"result NAME"``); nothing if none is."""
    results = missing_results(profile, needed, root)
    return [*STAGES, *(RESULT + name for name in results)] if results else []


def build_isolated(profile: Profile, needed, root: Path, env: dict[str, str] | None = None) -> int:
    """Build each missing step in its own process; the first non-zero exit status, or 0."""
    record = json_record(profile)
    env = dict(env or os.environ)
    if profile.ladder:  # the record names the rungs only; the child reads their specs from here
        env["RELINK_LADDER"] = ",".join(profile.ladder)
    for step in steps(profile, needed, root):
        code = subprocess.run([sys.executable, "-c", step_code(record, root, step)], env=env).returncode
        if code:
            return code
    return 0


def json_record(profile: Profile) -> str:
    import json

    return json.dumps(profile.record(), sort_keys=True)
