"""Cost of the full re-linkage audit, as ratios to simpler work measured in the same run.

Synthetic embeddings the size of the MIMIC-CXR held-out set (Q = M = 43,793
pairs, d = 512) with a planted image-report signal, patients with several
studies each and a few pathology label groups. Measured in one process:

* the full audit (pools 10, 100, 1000, 10000, full; K 1, 5, 10; both
  directions; study and patient levels; random and pathology-matched
  negatives; 1,000 patient bootstrap replicates) against one bare blocked
  matrix product of the same shapes (torch.mm into a preallocated block
  output, torch's default threads), timed before and after the audit;
* Monte Carlo with 100 pools per query at N = 10,000 (one direction, study
  level, random negatives). Its cost is linear in the queries, so it is timed
  on ``--mc-queries`` random queries and scaled to all of them (printed as
  such);
* a FAISS IndexFlatIP top-10 search of the same shapes;
* peak memory: tracemalloc (numpy and Python objects; torch's own buffers are
  not traced) and the process's peak resident set (ru_maxrss).

Absolute times depend on the machine and its load; the ratios are the result.

    python benchmarks/audit.py            # full size, several minutes on 2 cores
    python benchmarks/audit.py --n 5000   # quick run
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

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
    import torch

    x, y = torch.from_numpy(image), torch.from_numpy(text)
    out = torch.empty(block_rows, x.shape[0])
    t0 = time.perf_counter()
    for r0 in range(0, x.shape[0], block_rows):
        r1 = min(x.shape[0], r0 + block_rows)
        torch.mm(x[r0:r1], y.T, out=out[: r1 - r0])
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
    ap.add_argument("--mc-queries", type=int, default=200, help="queries timed for Monte Carlo")
    ap.add_argument("--mc-pools", type=int, default=100, help="Monte Carlo pools per query")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from relink.retrieval.audit import audit_arrays
    from relink.retrieval.montecarlo import monte_carlo_recall

    tracemalloc.start()
    image, text, patient, labels = synthetic(args.n, args.d, args.seed)
    n = args.n
    pools = [p for p in (10, 100, 1000, 10000) if p <= n] + ["full"]
    print(f"pairs {n}, dim {args.d}, patients {len(np.unique(patient))}, torch threads {torch.get_num_threads()}")

    # the machine is shared: time the bare product on both sides of the audit and take the mean
    t_before = bare_product(image, text)
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    frame = audit_arrays(image, text, patient, labels, pools=pools, ks=(1, 5, 10),
                         negatives=("random", "pathology_matched"), n_boot=args.boot, random_state=args.seed)
    t_audit = time.perf_counter() - t0
    audit_peak = tracemalloc.get_traced_memory()[1]
    t_after = bare_product(image, text)
    t_gemm = (t_before + t_after) / 2

    n_mc = min(args.mc_queries, n)
    draw = min(10000, n) - 1
    queries = np.random.default_rng(args.seed).choice(n, size=n_mc, replace=False)
    t0 = time.perf_counter()
    monte_carlo_recall(image, text, patient, [draw], (1, 5, 10), args.mc_pools, queries=queries, random_state=args.seed)
    t_mc = (time.perf_counter() - t0) * n / n_mc
    t_faiss = faiss_top10(image, text)
    peak_traced = tracemalloc.get_traced_memory()[1]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    sel = frame[(frame.metric == "recall") & (frame.K == 1) & (frame.direction == "image_to_report") & (frame.level == "study")]
    print(f"audit table: {len(frame)} rows; Recall@1 image_to_report/study by negatives and N:")
    for _, r in sel.iterrows():
        print(f"  {r.negatives:18s} N={r.N:<6d} {r.value:.4f} [{r.ci_low:.4f}, {r.ci_high:.4f}] lift {r.lift:6.1f} coverage {r.coverage:.3f}")
    print(f"bare blocked product        {t_gemm:8.1f} s   (mean of {t_before:.1f} s before and {t_after:.1f} s after the audit)")
    print(f"full audit                  {t_audit:8.1f} s   ratio to product {t_audit / t_gemm:5.2f}  (aim <= 1.5)")
    print(f"Monte Carlo, {args.mc_pools} pools at N={draw + 1} {t_mc:8.1f} s   (timed on {n_mc} queries, scaled to {n});"
          f" audit / Monte Carlo {t_audit / t_mc:.4f}")
    print(f"FAISS IndexFlatIP top-10    {t_faiss:8.1f} s   audit / FAISS {t_audit / t_faiss:5.2f}")
    print(f"peak memory: tracemalloc audit {audit_peak / 2**20:.0f} MiB, whole run {peak_traced / 2**20:.0f} MiB;"
          f" ru_maxrss {rss:.0f} MiB (aim < 2048)")


if __name__ == "__main__":
    main()
