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

    python benchmarks/audit.py                 # full size, ~10 minutes on 2 busy cores
    python benchmarks/audit.py --n 10000       # quick run
    python benchmarks/audit.py --products      # compare product tilings and thread layouts too
"""

from __future__ import annotations

import argparse
import resource
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

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
    args = ap.parse_args(argv)

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


if __name__ == "__main__":
    main()
