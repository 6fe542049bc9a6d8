"""The audit at scale: time and peak memory against the bare product, one and two processes.

For each size Q = M = n (default 25k, 50k, 100k, 200k; fp32, d = 512), random
unit embeddings (patients of about three studies each) are saved once as an
EmbeddingSet folder under ``--data``, and then, each in a fresh process:

* the bare blocked product of the same shapes, as the audit lays it out
  (each thread single-threaded 510 x 2040 tiles into a reused buffer; the
  fastest exact product measured here, see ``benchmarks/audit.py
  --products``), the arrays in memory;
* ``relink audit --memory BUDGET`` (default 256MB) with its default options
  (pools 10, 100, 1000, 10000, full; K 1, 5, 10; both directions, study and
  patient levels, 1,000 bootstrap replicates), one process;
* the same under ``torchrun --nproc_per_node 2 ... --distributed`` (gloo).

It prints, per size and process count: time, the ratio to the bare product,
peak RSS (each process's VmHWM), and the baselines: the interpreter with
torch imported, and the process when the
audit begins (torch, the libraries relink imports, the set's row table); the
budget bounds what the audit command holds beyond the interpreter with
torch (so peak RSS <= budget + that baseline, checked and printed
per row). It fits time = a * Q * M and checks that
memory stays flat (it follows the budget and the tile, not the size), and
writes ``benchmarks/results/audit_scale.json`` with every measured number,
the product pass's throughput per score cell, and a projection to 1M and 10M
pairs on one GPU and on P GPUs, labelled as a projection (it assumes a GPU
fp32 rate, ``--gpu-tflops``, and the counting overhead measured here).

    python benchmarks/audit_scale.py --sizes 25000,50000        # a few minutes
    python benchmarks/audit_scale.py                            # ~40 minutes on 2 busy cores
    python benchmarks/audit_scale.py --sizes 200000 --procs 1 --confident 0.9,0.99   # ~25 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results" / "audit_scale.json"
D = 512


def make_set(folder: Path, n: int, seed: int = 0) -> Path:
    """Random unit image and report rows (independent: a chance-level model), patients of ~3 studies."""
    import pandas as pd

    from relink.embeddings import EmbeddingSet, load, save

    if (folder / "meta.json").is_file():
        try:
            if len(load(folder, check_values=False)) == n:
                return folder
        except Exception:  # noqa: BLE001 - rebuild anything unreadable
            pass
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n), rng.geometric(0.35, size=n))[:n]
    rows = pd.DataFrame({"pair_id": [f"s{i}" for i in range(n)], "patient_id": [f"p{p}" for p in patient],
                         "cohort": "random", "split": "test"})

    def unit() -> np.ndarray:
        out = np.empty((n, D), np.float32)
        for a in range(0, n, 65536):
            x = rng.standard_normal((min(n, a + 65536) - a, D), dtype=np.float32)
            out[a:a + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    save(EmbeddingSet(rows, unit(), unit(), meta={"model": "random-unit"}), folder)
    return folder


def _status_mib(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, MiB.

    Not ``ru_maxrss``: Linux carries the parent's peak into a child across
    fork and exec, so a child of a large parent would report the parent's.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _after_import(name: str, then) -> None:
    """Call ``then(module)`` once module ``name`` is first imported (a one-shot import hook)."""
    import importlib.abc
    import importlib.util

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname != name:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                then(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Hook())


def child(argv: list[str]) -> None:
    """One measured ``relink audit`` (a rank of it under torchrun): a JSON line on stdout."""
    import torch  # noqa: F401 - the interpreter baseline is python + torch

    out = {"baseline_torch_mib": _status_mib("VmHWM")}
    from relink.cli import main

    def measured(*args, **kwargs):
        out["ready_mib"] = _status_mib("VmRSS")  # what the process holds when the audit begins
        out["ready_peak_mib"] = _status_mib("VmHWM")
        t0 = time.perf_counter()
        qv = inner(*args, **kwargs)
        out["audit_queries_s"] = time.perf_counter() - t0
        out.update({k: v for k, v in qv.run.items() if isinstance(v, (int, float, str)) or v is None})
        return qv

    # relink.retrieval.audit imports pandas and scipy: importing it here would move the command's budget start
    # past them; it is wrapped as the command imports it instead
    inner = None

    def wrap(module) -> None:
        nonlocal inner
        inner, module.audit_queries = module.audit_queries, measured

    _after_import("relink.retrieval.audit", wrap)
    t0 = time.perf_counter()
    code = main(argv)
    out.update(wall_s=time.perf_counter() - t0, code=code, rank=int(os.environ.get("RANK", 0)),
               peak_mib=_status_mib("VmHWM"))
    print("RESULT " + json.dumps(out), flush=True)
    if code:
        sys.exit(code)


def bare(folder: str) -> None:
    """The tiled product of the set's own arrays (loaded whole: the floor, not the audit)."""
    sys.path.insert(0, str(HERE.parent))
    from audit import tiled_product

    image, text = np.load(Path(folder) / "image.npy"), np.load(Path(folder) / "text.npy")
    print("RESULT " + json.dumps({"bare_s": tiled_product(image, text)}), flush=True)


def _run(cmd: list[str], timeout: float) -> list[dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    found = [json.loads(ln[7:]) for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if res.returncode != 0 or not found:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return found


def measure(folder: Path, procs: int, budget: str, timeout: float, confident: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["audit", "--embeddings", str(folder), "--memory", budget, "--out", str(Path(tmp) / "audit.csv")]
        argv += ["--confident", confident] if confident else []
        if procs == 1:
            ranks = _run([sys.executable, str(HERE), "--child", *argv], timeout)
        else:
            ranks = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
                          str(HERE), "--child", *argv, "--distributed"], timeout)
        table = (Path(tmp) / "audit.csv").read_bytes()
    first = min(ranks, key=lambda r: r["rank"])
    return {"processes": procs, "wall_s": max(r["wall_s"] for r in ranks),
            "product_s": max(r.get("product_s", float("nan")) for r in ranks),
            "all_reduce_s": first.get("all_reduce_s"), "all_reduce_bytes": first.get("all_reduce_bytes"),
            "peak_mib": max(r["peak_mib"] for r in ranks), "ready_mib": first["ready_mib"],
            "ready_peak_mib": first["ready_peak_mib"], "baseline_torch_mib": first["baseline_torch_mib"],
            "slabs": first.get("slabs"), "blocks": first.get("blocks"),
            "slab_rows": first.get("slab_rows"), "block_cols": first.get("block_cols"), "table_bytes": len(table),
            "table_sha": __import__("hashlib").sha256(table).hexdigest()[:16], "ranks": ranks,
            "confident_grid": first.get("confident_grid"), "confident_grid_asked": first.get("confident_grid_asked")}


def project(rows: list[dict], gpu_tflops: float) -> dict:
    """1M and 10M pairs on one GPU and on P GPUs, from the measured counting overhead (a projection)."""
    one = [r for r in rows if r["processes"] == 1]
    overhead = float(np.median([r["product_s"] / r["bare_s"] for r in one]))
    cpu_cells = float(np.median([r["n"] ** 2 / r["product_s"] for r in one]))
    out = {"label": "PROJECTION, not a measurement: assumes a GPU sustaining --gpu-tflops of fp32 matrix products "
                    "(TF32 off, as the audit requires) and the counting overhead measured on this CPU",
           "gpu_fp32_tflops_assumed": gpu_tflops, "counting_overhead_measured": overhead,
           "cpu_cells_per_s_measured": cpu_cells, "sizes": {}}
    for n in (1_000_000, 10_000_000):
        product = 2 * n * n * D / (gpu_tflops * 1e12)
        per_gpu = {p: product * overhead / p for p in (1, 8, 64)}
        out["sizes"][str(n)] = {"gpu_hours": {str(p): t / 3600 for p, t in per_gpu.items()},
                                "cpu_2core_hours": n * n / cpu_cells / 3600,
                                "per_pair_state_mb": n * 400 / 2**20}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="25000,50000,100000,200000")
    ap.add_argument("--procs", default="1,2", help="process counts to run each size with")
    ap.add_argument("--memory", default="256MB", help="the audit's --memory")
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "relink-audit-scale"),
                    help="folder for the generated sets (kept between runs)")
    ap.add_argument("--gpu-tflops", type=float, default=50.0, help="assumed fp32 rate of one GPU, for the projection")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--confident", default=None, metavar="TARGETS",
                    help="the audit's --confident (e.g. 0.9,0.99): the threshold attacker's counts too")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    procs = [int(p) for p in args.procs.split(",")]
    rows = []
    from relink.retrieval.memory import parse_memory

    budget_mib = parse_memory(args.memory) / 2**20
    print(f"budget --memory {args.memory}; d = {D}; fp32; random unit embeddings; {os.cpu_count()} cores", flush=True)
    for n in sizes:
        folder = Path(args.data) / f"n{n}"
        _run([sys.executable, str(HERE), "--make", str(folder), str(n)], args.timeout)  # the parent stays small
        bare_s = _run([sys.executable, str(HERE), "--bare", str(folder)], args.timeout)[0]["bare_s"]
        for p in procs:
            r = {"n": n, "bare_s": bare_s, **measure(folder, p, args.memory, args.timeout, args.confident)}
            r["ratio"] = r["wall_s"] / bare_s
            r["over_torch_mib"] = r["peak_mib"] - r["baseline_torch_mib"]
            r["within_budget"] = bool(r["over_torch_mib"] <= budget_mib)
            rows.append(r)
            print(f"n={n:>7,} procs={p}  audit {r['wall_s']:7.1f} s (product pass {r['product_s']:6.1f} s)  bare product "
                  f"{bare_s:7.1f} s  ratio {r['ratio']:4.2f}  peak RSS {r['peak_mib']:6.0f} MiB  (baselines: torch "
                  f"{r['baseline_torch_mib']:.0f}, audit start {r['ready_mib']:.0f}; peak - start "
                  f"{r['peak_mib'] - r['ready_mib']:.0f} MiB; peak - torch {r['over_torch_mib']:.0f} MiB "
                  f"{'<=' if r['within_budget'] else '>'} budget {budget_mib:.0f})  slabs x blocks {r['slabs']} x {r['blocks']}"
                  + (f"  all-reduce {r['all_reduce_s'] * 1e3:.0f} ms ({r['all_reduce_bytes'] / 2**20:.1f} MiB)"
                     if r.get("all_reduce_s") is not None else ""), flush=True)
    one = [r for r in rows if r["processes"] == 1]
    cells = np.array([float(r["n"]) ** 2 for r in one])
    fit = {}
    if len(one) >= 2:
        for key in ("wall_s", "bare_s", "product_s"):
            t = np.array([r[key] for r in one])
            a = float(cells @ t / (cells @ cells))  # least squares through the origin: t = a * Q * M
            fit[key] = {"seconds_per_cell": a, "relative_residuals": [float(x) for x in (t - a * cells) / t]}
        print("fit time = a * Q * M: " + ", ".join(
            f"{k} a = {v['seconds_per_cell'] * 1e9:.3f} ns/cell (residuals "
            f"{', '.join(f'{x:+.0%}' for x in v['relative_residuals'])})" for k, v in fit.items()))
        growth = [r["peak_mib"] - r["ready_mib"] for r in one]
        sizes_text = ", ".join(f"{r['n']:,}" for r in one)
        print(f"memory: peak - audit start {', '.join(f'{g:.0f}' for g in growth)} MiB for n = {sizes_text} "
              "(the budget, not the size)")
    same = {}
    for r in rows:
        same.setdefault(r["n"], set()).add(r["table_sha"])
    print("tables identical across process counts: " + ", ".join(f"{n:,}: {len(s) == 1}" for n, s in same.items()))
    result = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "d": D, "memory": args.memory,
              "rows": rows, "fit": fit}
    if one:
        result["projection"] = project(rows, args.gpu_tflops)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--bare":
        bare(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "--make":
        make_set(Path(sys.argv[2]), int(sys.argv[3]))
        print("RESULT {}")
    else:
        main()
