"""Peak resident memory of `relink paper`, stage by stage, and of every chapter in a fresh kernel.

The steps of a cold `relink paper`, as it runs them (relink.paper.isolated: the stages the results
stand on, i.e. generated cohorts, the ladder's training and each cohort's embeddings, then each
result: audit, hard negatives, DP, utility, ...), are built each in its own fresh process, in
dependency order, into an empty artifacts folder, so each peak is that step's alone and the largest
is the cold run's; then each chapter is executed again (``--force``) in a
fresh kernel with every artifact present; then the book is built. Memory is sampled from /proc
(psutil) every 0.1 s over the whole process tree: ``peak_process_mib`` is the largest single process
(the one a 2 GB Binder limit would stop first), ``peak_tree_mib`` the largest sum over the tree.

    python tools/paper_memory.py --profile smoke --out mem-smoke.json [--work DIR] [--stages-only]
        [--set FIELD=VALUE ...] [--divide N]

``--stages-only`` stops after the steps (no chapters, no book). ``--set`` changes profile fields as
``relink paper --set`` does; ``--divide N`` runs the profile with every size divided by N
(:func:`relink.paper.profiles.scaled`). The record (``--out``) is rewritten after every step, with
``complete`` false until the last step ran, and ``total_wall_s`` the sum so far: a stopped run leaves
what it measured. The study profile's record is ``benchmarks/results/study_run.json`` (copied there only
from a complete run); the book and notebooks are copied into the work folder (the repository's are left
alone).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def measure(cmd: list[str], env: dict[str, str], every: float = 0.1) -> dict:
    """Run ``cmd``; its wall time, the CPU time of its process tree (user + system, every process it and its
    children ran and waited for: what a step costs whatever else the machine runs) and the peaks of the tree's
    resident memory."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"process": 0, "tree": 0, "name": ""}
    done = threading.Event()

    def sample():
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            total = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    name = " ".join(p.cmdline()[:3])[-80:]
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                total += rss
                if rss > peak["process"]:
                    peak.update(process=rss, name=name)
            peak["tree"] = max(peak["tree"], total)
            time.sleep(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    done.set()
    thread.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"command": " ".join(cmd[1:]) if cmd[0] == sys.executable else " ".join(cmd), "rc": proc.returncode,
            "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(cpu, 1), "peak_process_mib": round(peak["process"] / MIB),
            "peak_tree_mib": round(peak["tree"] / MIB), "largest": peak["name"], "tail": out[-600:]}


def save(out: str, report: dict) -> None:
    Path(out).write_text(json.dumps(public(report), indent=1) + "\n")


def public(report: dict) -> dict:
    """What the book may show (benchmarks/results/paper_memory.json): figures only, no command line or output
    (they name this machine's folders); a failed step is printed while the tool runs."""
    keep = ("rc", "wall_s", "cpu_s", "peak_process_mib", "peak_tree_mib")
    strip = lambda m: {k: m[k] for k in keep if k in m}  # noqa: E731
    parts = [*report["stages"].values(), *report["chapters"].values(), *([report["book"]] if "book" in report else [])]
    return {"profile": report["profile"], "cpus": report["cpus"], "measured": time.strftime("%Y-%m-%d"),
            **{k: report[k] for k in ("divided_by", "settings", "caps") if k in report},
            "complete": bool(report.get("complete")), "total_wall_s": round(sum(m["wall_s"] for m in parts), 1),
            "total_cpu_s": round(sum(m.get("cpu_s", 0) for m in parts), 1),
            "peak_process_mib": max((m["peak_process_mib"] for m in parts), default=0),
            "stages": {k: strip(v) for k, v in report["stages"].items()},
            "chapters": {k: strip(v) for k, v in report["chapters"].items()},
            **({"book": strip(report["book"])} if "book" in report else {})}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default=None, help="work folder (default: a new temporary folder)")
    parser.add_argument("--stages-only", action="store_true", help="measure the steps only (no chapters, no book)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="change a profile field")
    parser.add_argument("--divide", type=int, default=1, help="divide every size of the profile by N")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="relink-mem-"))
    shutil.copytree(ROOT / "book", work / "book", ignore=shutil.ignore_patterns("_build", "*.ipynb"), dirs_exist_ok=True)
    shutil.copytree(ROOT / "notebooks", work / "notebooks", dirs_exist_ok=True)
    env = {**os.environ, "RELINK_BOOK_DIR": str(work / "book"), "RELINK_NOTEBOOK_DIR": str(work / "notebooks"),
           "RELINK_ARTIFACTS": str(work / "artifacts"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONHASHSEED": "0"}
    sys.path.insert(0, str(ROOT / "src"))
    from relink.paper.chapters import chapters
    from relink.paper.results import registry

    needed = sorted({r for c in chapters() for r in c.results})
    order = [name for name in registry() if name in needed or any(name in registry()[n].upstream for n in needed)]
    report = {"profile": args.profile, "cpus": os.cpu_count(), "stages": {}, "chapters": {}}
    # the steps a cold `relink paper` runs, each in its own process (relink.paper.isolated): the stages the
    # results stand on (generated cohorts, the ladder's training, each cohort's embeddings), then each result
    from relink.paper import isolated
    from relink.paper.profiles import get_profile, scaled
    from relink.paper.stages import default_root

    os.environ.update(env)  # default_root reads RELINK_ARTIFACTS
    settings = dict(item.split("=", 1) for item in args.set)
    profile = scaled(get_profile(args.profile, settings), args.divide)
    report.update(divided_by=args.divide, settings=settings, caps=list(profile.caps()))
    record, root = isolated.json_record(profile), default_root(profile)
    if args.divide != 1 or settings:  # chapters and book see the changed profile through `relink paper --set`
        changed = {k: v for k, v in profile.record().items() if get_profile(args.profile).record().get(k) != v}
        settings = {k: ",".join("none" if x is None else str(x) for x in v) if isinstance(v, list) else str(v)
                    for k, v in changed.items()}
    for key in [*isolated.STAGES, *(isolated.RESULT + name for name in order)]:  # the stage and the result `cohorts` differ
        report["stages"][key] = measure([sys.executable, "-c", isolated.step_code(record, root, key)], env)
        save(args.out, report)  # what is measured so far, should the run be stopped
        shown = report["stages"][key]
        print(key, {k: v for k, v in shown.items() if k != "tail" or shown["rc"]}, flush=True)
    if args.stages_only:
        report["complete"] = all(v["rc"] == 0 for v in report["stages"].values())
        save(args.out, report)
        return 0 if report["complete"] else 1
    sets = [x for k, v in settings.items() for x in ("--set", f"{k}={v}")]
    relink = [sys.executable, "-m", "relink", "paper", "--profile", args.profile, *sets, "--no-book", "--force"]
    for chapter in chapters():
        report["chapters"][chapter.stem] = measure(relink + ["--chapters", chapter.number], env)
        save(args.out, report)
        print(chapter.stem, {k: v for k, v in report["chapters"][chapter.stem].items() if k != "tail"}, flush=True)
    report["book"] = measure([sys.executable, "-m", "relink", "paper", "--profile", args.profile, *sets], env)
    print("book", {k: v for k, v in report["book"].items() if k != "tail"}, flush=True)
    failed = [k for part in ("stages", "chapters") for k, v in report[part].items() if v["rc"]] + \
             (["book"] if report["book"]["rc"] else [])
    report["complete"] = not failed
    save(args.out, report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
