"""Cost of the full re-linkage audit, as ratios to simpler work measured in the same run.

Synthetic embeddings the size of the MIMIC-CXR held-out set (Q = M = 43,793
pairs, d = 512) with a planted image-report signal, patients with several
studies each and a few pathology label groups. Measured in one process, in
``--repeat`` interleaved rounds (the machine is shared: a ratio of medians of
interleaved runs is what stays put when its load changes):

* the full exact audit (pools 10, 100, 1000, 10000, full; K 1, 5, 10; both
  directions; study and patient levels; random and pathology-matched
  negatives; 1,000 patient bootstrap replicates), :func:`relink.retrieval.audit.audit_arrays`;
* FAISS IndexFlatIP top-10 of the same shapes, one direction (what a user
  would run instead): the audit's target is audit / FAISS <= 1.0;
* the bare blocked product of the same shapes two ways: ``torch.mm`` of
  512-row blocks into a preallocated output with torch's own threads, and
  the audit's own tiling (each thread single-threaded OpenBLAS products,
  numpy's ``matmul``, of 510 x 2040 tiles into a reused buffer), the fastest
  exact product found here (``--products`` times the others tried: the same
  tiling with torch's ``mm``, other tile shapes, numpy's own threads);
* once, outside the rounds: Monte Carlo with 100 pools per query at N = 10,000
  (one direction, study level, random negatives), timed on ``--mc-queries``
  random queries and scaled to all of them (printed as such), and peak
  memory (tracemalloc of one more, untimed audit: tracing every allocation
  slows the audit's many small numpy steps, so no timed run is traced; the
  process's ru_maxrss).

Absolute times depend on the machine and its load; the ratios are the result.
The figures (ratios, medians, sizes; no path or host name) are printed and
written to ``benchmarks/results/audit.json`` (``--json``).

``--memory-run N`` measures the memory budget instead: a random EmbeddingSet
of N pairs (``--d`` dimensions, written to a temporary folder) audited by the
front door with the threshold attacker's counts under ``--memory`` (default
256MB), the resident set sampled every few milliseconds; the figure is the
peak less the baseline of the same process, taken after the audit's
libraries are imported (:func:`relink.retrieval.memory.baseline`, what the
budget counts from), for the pass and for the summary after it. Written to
``benchmarks/results/audit_memory.json``.

    python benchmarks/audit.py                 # full size, ~10 minutes on 2 busy cores
    python benchmarks/audit.py --n 10000       # quick run
    python benchmarks/audit.py --products      # compare product tilings and thread layouts too
    python benchmarks/audit.py --memory-run 200000 --d 64 --memory 256MB
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from relink.labels import CHEXPERT_LABELS


def synthetic(n: int, d: int, seed: int):
    """Images, reports with a planted signal, patient ids and 14-label rows from a few groups."""
    rng = np.random.default_rng(seed)
    sizes = rng.geometric(0.35, size=n)  # studies per patient, mean about 3
    patient = np.repeat(np.arange(n), sizes)[:n]
    n_groups = 6
    group = rng.choice(n_groups, size=n, p=[0.35, 0.2, 0.15, 0.12, 0.1, 0.08])
    vectors = rng.choice([0.0, 1.0, -1.0, np.nan], size=(n_groups, len(CHEXPERT_LABELS)), p=[0.6, 0.2, 0.05, 0.15])
    labels = vectors[group]
    centre = rng.normal(size=(n_groups, d)).astype(np.float32) * 0.6  # what a label group shares
    person = rng.normal(size=(n, d)).astype(np.float32) * 0.5  # what one patient's studies share
    image = rng.normal(size=(n, d)).astype(np.float32) + centre[group] + person[patient]
    # a weak pair-specific signal: about 15x chance at N = 100, 50x at N = 10,000 (the paper's strongest model)
    text = 0.01 * image + rng.normal(size=(n, d)).astype(np.float32) + centre[group] + 0.1 * person[patient]
    for a in (image, text):
        a /= np.linalg.norm(a, axis=1, keepdims=True)
    return image, text, patient, labels


def bare_product(image, text, block_rows: int = 512) -> float:
    """torch.mm of row blocks against every column, into one preallocated output, torch's own threads."""
    import torch

    x, y = torch.from_numpy(image), torch.from_numpy(text)
    out = torch.empty(block_rows, x.shape[0])
    t0 = time.perf_counter()
    for r0 in range(0, x.shape[0], block_rows):
        r1 = min(x.shape[0], r0 + block_rows)
        torch.mm(x[r0:r1], y.T, out=out[: r1 - r0])
    return time.perf_counter() - t0


def tiled_product(image, text, block_rows: int = 510, cols: int = 2040, threads: int | None = None,
                  library: str = "numpy") -> float:
    """The audit's layout: each thread takes row blocks and runs single-threaded products of
    ``block_rows`` x ``cols`` tiles into its own reused buffer (no counting); ``library`` "numpy"
    (OpenBLAS's sgemm, what the audit uses on a CPU) or "torch" (torch.mm: MKL's)."""
    import torch

    from relink.retrieval.engine.backends import single_threaded_libraries

    n = image.shape[0]
    threads = threads or torch.get_num_threads()
    local = threading.local()
    x, y = torch.from_numpy(image), torch.from_numpy(text)

    def block(r0: int) -> None:
        if not hasattr(local, "buf"):
            local.buf = np.empty(block_rows * cols, np.float32)
        r1 = min(n, r0 + block_rows)
        for c0 in range(0, n, cols):
            c1 = min(n, c0 + cols)
            out = local.buf[: (r1 - r0) * (c1 - c0)].reshape(r1 - r0, c1 - c0)
            if library == "numpy":
                np.matmul(image[r0:r1], text[c0:c1].T, out=out)
            else:
                torch.mm(x[r0:r1], y[c0:c1].T, out=torch.from_numpy(out))

    with single_threaded_libraries():
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(block, range(0, n, block_rows)))
        return time.perf_counter() - t0


def numpy_product(image, text, block_rows: int = 512) -> float:
    """numpy's matmul (its own BLAS) of row blocks into a preallocated output."""
    out = np.empty((block_rows, text.shape[0]), dtype=np.float32)
    t0 = time.perf_counter()
    for r0 in range(0, image.shape[0], block_rows):
        r1 = min(image.shape[0], r0 + block_rows)
        np.matmul(image[r0:r1], text.T, out=out[: r1 - r0])
    return time.perf_counter() - t0


def faiss_top10(image, text) -> float:
    import faiss

    t0 = time.perf_counter()
    index = faiss.IndexFlatIP(text.shape[1])
    index.add(text)
    index.search(image, 10)
    return time.perf_counter() - t0


RESULTS = Path(__file__).resolve().parent / "results"


def per_round_ratios(times: dict) -> dict:
    """Median over rounds of each round's own ratios (audit confident / audit, audit / tiled product)."""
    def med(a: str, b: str) -> float:
        return round(float(np.median(np.asarray(times[a]) / np.asarray(times[b]))), 3)
    return {"confident_over_plain": med("audit confident", "audit"), "plain_over_tiled_product": med("audit", "tiled"),
            "plain_over_faiss": med("audit", "faiss")}


def write_figures(path: Path, figures: dict) -> None:
    """The figures as JSON (numbers and settings only: no path, no host name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"figures written to {path.parent.name}/{path.name}")


def random_set(folder: Path, n: int, d: int, seed: int) -> Path:
    """A random EmbeddingSet of ``n`` pairs (unit float32 rows, about three studies per patient)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("image", "text"):
        a = rng.normal(size=(n, d)).astype(np.float32)
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        np.save(folder / f"{name}.npy", a)
        del a
    patient = np.repeat(np.arange(n), rng.geometric(0.35, size=n))[:n]
    pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)], "patient_id": [f"q{p}" for p in patient],
                  "cohort": "random", "split": "test"}).to_parquet(folder / "rows.parquet", index=False)
    (folder / "meta.json").write_text(json.dumps({"format_version": 1, "model": "random"}))
    return folder


class Sampler:
    """The resident set, sampled every ``every`` seconds on a thread, with its peak per phase."""

    def __init__(self, every: float = 0.005):
        from relink.retrieval.memory import resident

        self.resident, self.every = resident, every
        self.phase, self.peaks = "start", {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.resident() or 0
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), now)
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def enter(self, phase: str) -> None:
        now = self.resident() or 0
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), now)
        self.phase = phase


def memory_run(args) -> dict:
    """Peak resident set above the baseline during an audit under ``--memory`` (see the module docstring)."""
    import tempfile

    from relink.api.audit import audit
    from relink.retrieval import audit as retrieval_audit
    from relink.retrieval import confident, summary  # noqa: F401 - loaded before the baseline, as relink.api.audit does
    from relink.retrieval.memory import baseline, parse_memory, return_freed_memory, show_bytes
    from relink.retrieval.scale import Scale
    from relink.retrieval.spec import AuditSpec

    budget = parse_memory(args.memory)
    with tempfile.TemporaryDirectory() as tmp:
        # written by another process, so that none of its memory is in this one's baseline
        folder = Path(tmp) / "set"
        subprocess.run([sys.executable, __file__, "--make-set", str(folder), "--memory-run", str(args.memory_run),
                        "--d", str(args.d), "--seed", str(args.seed)], check=True)
        return_freed_memory()  # as relink audit does
        start = baseline()
        spec = AuditSpec(confident=(0.9, 0.99), n_boot=args.boot, random_state=args.seed, pools_clip=True)
        summarise = retrieval_audit.summarise
        with Sampler() as sampler:
            sampler.enter("pass")

            def timed_summary(*a, **k):
                sampler.enter("summary")
                try:
                    return summarise(*a, **k)
                finally:
                    sampler.enter("after")

            retrieval_audit.summarise = timed_summary  # the front door reads it at call time
            try:
                t0 = time.perf_counter()
                result = audit(str(folder), spec, Scale(memory=budget, held_from=start))
                seconds = time.perf_counter() - t0
            finally:
                retrieval_audit.summarise = summarise
    peaks = {k: v - start for k, v in sampler.peaks.items()}
    mib = {k: round(v / 2**20, 1) for k, v in peaks.items()}
    figures = {"pairs": args.memory_run, "dim": args.d, "budget_mib": round(budget / 2**20, 1),
               "confident": [0.9, 0.99], "pools": list(map(str, spec.pools)),
               "baseline_mib": round(start / 2**20, 1), "peak_above_baseline_mib": mib,
               "within_budget": bool(max(peaks.values()) <= budget), "seconds": round(seconds, 1),
               "grid": result.settings.get("confident_thresholds"), "table_rows": len(result.table)}
    print(f"{args.memory_run:,} pairs, dim {args.d}, --memory {show_bytes(budget)}: baseline {figures['baseline_mib']} "
          f"MiB; peak above it by phase (MiB): {mib}; within budget: {figures['within_budget']}; {seconds:.0f} s")
    return figures


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=43793, help="pairs (queries = candidates)")
    ap.add_argument("--d", type=int, default=512, help="embedding dimension")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap replicates")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds (medians are reported)")
    ap.add_argument("--mc-queries", type=int, default=200, help="queries timed for Monte Carlo")
    ap.add_argument("--mc-pools", type=int, default=100, help="Monte Carlo pools per query")
    ap.add_argument("--products", action="store_true", help="also time other product layouts in every round")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--memory-run", type=int, default=0, metavar="N",
                    help="measure the memory budget on N random pairs instead (see above)")
    ap.add_argument("--memory", default="256MB", help="the budget of --memory-run")
    ap.add_argument("--json", default=None, help="where the figures go (default: benchmarks/results/audit.json, "
                                                 "or audit_memory.json with --memory-run)")
    ap.add_argument("--make-set", default=None, help=argparse.SUPPRESS)  # --memory-run's set, in another process
    args = ap.parse_args(argv)
    if args.make_set:
        random_set(Path(args.make_set), args.memory_run, args.d, args.seed)
        return
    if args.memory_run:
        figures = memory_run(args)
        write_figures(Path(args.json) if args.json else RESULTS / "audit_memory.json", figures)
        return

    import torch

    from relink.retrieval.audit import audit_arrays
    from relink.retrieval.montecarlo import monte_carlo_recall

    image, text, patient, labels = synthetic(args.n, args.d, args.seed)
    n = args.n
    pools = [p for p in (10, 100, 1000, 10000) if p <= n] + ["full"]
    print(f"pairs {n}, dim {args.d}, patients {len(np.unique(patient))}, torch threads {torch.get_num_threads()}, "
          f"{args.repeat} interleaved rounds")

    def full_audit(confident=()):
        return audit_arrays(image, text, patient, labels, pools=pools, ks=(1, 5, 10),
                            negatives=("random", "pathology_matched"), n_boot=args.boot, random_state=args.seed,
                            confident=confident)

    work = {"audit": full_audit, "audit confident": lambda: full_audit((0.9, 0.99)),
            "faiss": lambda: faiss_top10(image, text),
            "tiled": lambda: tiled_product(image, text), "bare": lambda: bare_product(image, text)}
    if args.products:
        work.update({"tiled torch.mm": lambda: tiled_product(image, text, library="torch"),
                     "tiled 1020x2040": lambda: tiled_product(image, text, 1020, 2040),
                     "tiled 1020x4080": lambda: tiled_product(image, text, 1020, 4080),
                     "tiled 2040x1024": lambda: tiled_product(image, text, 2040, 1024),
                     "tiled 256x8160": lambda: tiled_product(image, text, 256, 8160),
                     "bare 4096 rows": lambda: bare_product(image, text, 4096),
                     "numpy 512 rows": lambda: numpy_product(image, text)})
    times: dict[str, list[float]] = {k: [] for k in work}
    for r in range(args.repeat):
        for name, fn in work.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    med = {k: float(np.median(v)) for k, v in times.items()}
    tracemalloc.start()
    frame = full_audit()
    audit_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    n_mc = min(args.mc_queries, n)
    draw = min(10000, n) - 1
    queries = np.random.default_rng(args.seed).choice(n, size=n_mc, replace=False)
    t0 = time.perf_counter()
    monte_carlo_recall(image, text, patient, [draw], (1, 5, 10), args.mc_pools, queries=queries, random_state=args.seed)
    t_mc = (time.perf_counter() - t0) * n / n_mc
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    sel = frame[(frame.metric == "recall") & (frame.K == 1) & (frame.direction == "image_to_report") & (frame.level == "study")]
    print(f"audit table: {len(frame)} rows; Recall@1 image_to_report/study by negatives and N:")
    for _, r in sel.iterrows():
        print(f"  {r.negatives:18s} N={r.N:<6d} {r.value:.4f} [{r.ci_low:.4f}, {r.ci_high:.4f}] lift {r.lift:6.1f} coverage {r.coverage:.3f}")
    print("medians of interleaved rounds:")
    for name, t in med.items():
        print(f"  {name:22s} {t:8.1f} s   / FAISS {t / med['faiss']:5.2f}   / tiled product {t / med['tiled']:5.2f}")
    print(f"full audit / FAISS flat top-10 = {med['audit'] / med['faiss']:.2f}  (aim <= 1.0)")
    print(f"audit with confident re-links (0.9, 0.99) / audit without = {med['audit confident'] / med['audit']:.2f}"
          "  (aim <= 1.3)")
    print(f"full audit / bare product (torch.mm, 512-row blocks) = {med['audit'] / med['bare']:.2f}; "
          f"/ tiled product = {med['audit'] / med['tiled']:.2f}")
    print(f"Monte Carlo, {args.mc_pools} pools at N={draw + 1} {t_mc:8.1f} s   (timed on {n_mc} queries, scaled to {n});"
          f" audit / Monte Carlo {med['audit'] / t_mc:.4f}")
    print(f"peak memory: tracemalloc audit {audit_peak / 2**20:.0f} MiB; ru_maxrss {rss:.0f} MiB")
    print("medians of each round's own ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in per_round_ratios(times).items()))
    figures = {"pairs": n, "dim": args.d, "bootstrap": args.boot, "rounds": args.repeat,
               "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
               "median_seconds": {k: round(v, 2) for k, v in med.items()},
               "ratios": {"confident_over_plain": round(med["audit confident"] / med["audit"], 3),
                          "plain_over_tiled_product": round(med["audit"] / med["tiled"], 3),
                          "plain_over_bare_product": round(med["audit"] / med["bare"], 3),
                          "plain_over_faiss": round(med["audit"] / med["faiss"], 3),
                          "plain_over_monte_carlo": round(med["audit"] / t_mc, 4)},
               # the same ratios within each round, then their median: a round's two timings share its load
               "per_round_ratio_medians": per_round_ratios(times),
               "targets": {"confident_over_plain": 1.3, "plain_over_tiled_product": 1.25, "plain_over_faiss": 1.0},
               "peak_mib": {"tracemalloc_audit": round(audit_peak / 2**20, 1), "ru_maxrss": round(rss, 1)},
               "rounds_seconds": {k: [round(t, 2) for t in v] for k, v in times.items()}}
    write_figures(Path(args.json) if args.json else RESULTS / "audit.json", figures)


if __name__ == "__main__":
    main()
