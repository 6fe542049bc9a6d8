"""The default profile's footprint where Binder runs it: wall time and peak memory, per step and per chapter.

Reads ``tools/paper_memory.py``'s record: per step of a cold run (each in a fresh process) and per chapter
(a fresh kernel), ``wall_s``, ``peak_process_mib`` (the largest single process, the one a memory limit
stops first) and ``peak_tree_mib`` (the largest sum over the process tree). Binder's ``postBuild`` runs
the steps and the chapters, so their summed wall time is what the image's build spends on the paper.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

#: the memory a Binder session is usually given (mybinder.org: 1 to 2 GB), MiB
BINDER_LIMIT_MIB = 2048


def _rows(mem: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = [("step", name, m) for name, m in mem["stages"].items()]
    return out + [("chapter", name, m) for name, m in mem["chapters"].items()]


def table(mem: dict[str, Any], titles: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per step and per chapter: what ran, its wall time and its two peaks."""
    rows = []
    for kind, name, m in _rows(mem):
        what = f"Chapter: {(titles or {}).get(name, name)}" if kind == "chapter" else f"Step: {name}"
        rows.append({"What ran": what, "Wall time (s)": float(m["wall_s"]),
                     "Peak, largest process (MiB)": int(m["peak_process_mib"]),
                     "Peak, all its processes (MiB)": int(m["peak_tree_mib"])})
    return pd.DataFrame(rows)


def largest(mem: dict[str, Any], kind: str) -> tuple[str, int]:
    """The step or chapter (``kind``) with the largest single-process peak, and that peak in MiB."""
    name, m = max(((n, m) for k, n, m in _rows(mem) if k == kind), key=lambda t: t[1]["peak_process_mib"])
    return name, int(m["peak_process_mib"])


def glue_values(mem: dict[str, Any], titles: dict[str, str] | None = None) -> dict[str, Any]:
    """The numbers the costs chapter states, and one sentence that says them."""
    step, step_mib = largest(mem, "step")
    over = [n for k, n, m in _rows(mem) if m["peak_process_mib"] > BINDER_LIMIT_MIB]
    verdict = "every step and every chapter measured stays below it" if not over else "above it: " + ", ".join(over)
    build_s = sum(m["wall_s"] for _, _, m in _rows(mem))
    out = {"mem_cpus": int(mem["cpus"]), "mem_date": str(mem.get("measured", "")), "mem_step": step,
           "mem_step_mib": step_mib, "mem_limit_mib": BINDER_LIMIT_MIB, "mem_verdict": verdict,
           "binder_build_min": build_s / 60}
    text = f"The largest step, {step}, peaked at {step_mib:,d} MiB in one process"
    if mem.get("chapters"):
        chapter, chapter_mib = largest(mem, "chapter")
        out.update(mem_chapter=(titles or {}).get(chapter, chapter), mem_chapter_mib=chapter_mib)
        text += f", and the largest chapter ({out['mem_chapter']}) at {chapter_mib:,d} MiB: {verdict}. "
        text += (f"Building the paper took {build_s / 60:.0f} minutes in all, which is what postBuild adds to the "
                 "image's build.")
    else:
        text += (f": {verdict}. This measurement holds only the steps in the table (it stopped before the rest of "
                 f"the paper and the chapters' re-runs in a fresh kernel); they took {build_s / 60:.0f} minutes.")
    out["mem_sentence"] = text
    return out
