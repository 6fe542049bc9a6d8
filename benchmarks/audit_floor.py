"""The floor under ``audit / tiled product`` on this machine (benchmarks/audit.py's ratio).

An exact Recall@K needs, for every score of the product, at least one comparison with its row's true score and
one with its column's, and the two counts (the study level); the patient level needs one more comparison of each
score whose row's (column's) patient holds a better true score than the pair's own, with that score. This times,
in interleaved rounds, the audit's own tiled product (benchmarks/audit.py's ``tiled_product``: same tiles, same
threads, same data) against the same product followed by only that least counting (numpy's ``greater`` into a
reused mask, ``count_nonzero`` per row and per column), for the study level alone and for both levels. The
audit does more on top (the pathology-matched pools, ties, the summary), so no audit of both levels can be below
the second ratio here.

    python benchmarks/audit_floor.py [--n 43793] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from audit import RESULTS, synthetic, tiled_product, write_figures


def patient_best(image, text, patient) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best score among its patient's reports, and each column's among its patient's images."""
    best_row, best_col = np.empty(len(patient), np.float32), np.empty(len(patient), np.float32)
    order = np.argsort(patient, kind="stable")
    edges = np.flatnonzero(np.diff(patient[order])) + 1
    for members in np.split(order, edges):
        s = image[members] @ text[members].T
        best_row[members], best_col[members] = s.max(1), s.max(0)
    return best_row, best_col


def least_counting(image, text, best=None, block_rows: int = 510, cols: int = 2040) -> float:
    """The tiled product plus one comparison per score with its row's truth and one with its column's, counted;
    with ``best`` (:func:`patient_best`), also the patient level's comparisons where its threshold differs."""
    import torch

    from relink.retrieval.engine.backends import single_threaded_libraries

    n = image.shape[0]
    truth = np.einsum("ij,ij->i", image, text).astype(np.float32)
    rows, cols_count = np.zeros(n, np.int64), np.zeros(n, np.int64)
    if best is not None:
        patient_rows, patient_cols = np.zeros(n, np.int64), np.zeros(n, np.int64)
        row_differs, col_differs = best[0] > truth, best[1] > truth
    local, lock = threading.local(), threading.Lock()

    def block(r0: int) -> None:
        if not hasattr(local, "buf"):
            local.buf = np.empty(block_rows * cols, np.float32)
            local.mask = np.empty(block_rows * cols, np.bool_)
        r1 = min(n, r0 + block_rows)
        for c0 in range(0, n, cols):
            c1 = min(n, c0 + cols)
            out = local.buf[: (r1 - r0) * (c1 - c0)].reshape(r1 - r0, c1 - c0)
            mask = local.mask[: out.size].reshape(out.shape)
            np.matmul(image[r0:r1], text[c0:c1].T, out=out)
            np.greater(out, truth[r0:r1, None], out=mask)
            rows[r0:r1] += np.count_nonzero(mask, axis=1)  # each row block belongs to one thread
            np.greater(out, truth[None, c0:c1], out=mask)
            counted = np.count_nonzero(mask, axis=0)
            if best is not None:
                r = np.flatnonzero(row_differs[r0:r1])
                patient_rows[r0 + r] += np.count_nonzero(out[r] > best[0][r0 + r, None], axis=1)
                c = np.flatnonzero(col_differs[c0:c1])
                by_col = np.count_nonzero(out[:, c] > best[1][None, c0 + c], axis=0)
            with lock:  # column counts are shared by the threads
                cols_count[c0:c1] += counted
                if best is not None:
                    patient_cols[c0 + c] += by_col

    with single_threaded_libraries():
        t0 = time.perf_counter()
        with ThreadPoolExecutor(torch.get_num_threads()) as pool:
            list(pool.map(block, range(0, n, block_rows)))
        return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=43793)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="default: benchmarks/results/audit_floor.json")
    args = ap.parse_args(argv)
    image, text, patient, _ = synthetic(args.n, args.d, args.seed)
    best = patient_best(image, text, patient)
    work = {"tiled": lambda: tiled_product(image, text), "study level": lambda: least_counting(image, text),
            "both levels": lambda: least_counting(image, text, best)}
    times: dict[str, list[float]] = {name: [] for name in work}
    for r in range(args.repeat):
        for name, run in work.items():
            times[name].append(run())
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    ratios = {k: round(float(np.median(np.asarray(times[k]) / np.asarray(times["tiled"]))), 3)
              for k in ("study level", "both levels")}
    print(f"floor, least counting / tiled product (median of {args.repeat} rounds' own ratios): "
          f"study level {ratios['study level']:.3f}, both levels {ratios['both levels']:.3f}")
    write_figures(Path(args.json) if args.json else RESULTS / "audit_floor.json",
                  {"pairs": args.n, "dim": args.d, "rounds": args.repeat, "floor_over_tiled_product": ratios,
                   "rounds_seconds": {k: [round(t, 2) for t in v] for k, v in times.items()}})


if __name__ == "__main__":
    main()
