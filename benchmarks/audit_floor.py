"""The floor under ``audit / tiled product`` on this machine (benchmarks/audit.py's ratio).

An exact Recall@K needs, for every score of the product, at least one comparison with its row's true score and
one with its column's, and the two counts. This times, in interleaved rounds, the audit's own tiled product
(benchmarks/audit.py's ``tiled_product``: same tiles, same threads) against the same product followed by only
that least counting (numpy's ``greater`` into a reused mask, ``count_nonzero`` per row and per column), at the
benchmark's size. The audit does more on top (the patient level, the pathology-matched pools, the threshold
attacker's bins, the summary), so no audit can be below this ratio here.

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


def least_counting(image, text, block_rows: int = 510, cols: int = 2040) -> float:
    """The tiled product plus one comparison per score with its row's truth and one with its column's, counted."""
    import torch

    from relink.retrieval.engine.backends import single_threaded_libraries

    n = image.shape[0]
    truth = np.einsum("ij,ij->i", image, text).astype(np.float32)
    rows, cols_count = np.zeros(n, np.int64), np.zeros(n, np.int64)
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
            with lock:  # column counts are shared by the threads
                cols_count[c0:c1] += counted

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
    image, text, _, _ = synthetic(args.n, args.d, args.seed)
    times: dict[str, list[float]] = {"tiled": [], "least counting": []}
    for r in range(args.repeat):
        times["tiled"].append(tiled_product(image, text))
        times["least counting"].append(least_counting(image, text))
        print(f"round {r + 1}: tiled {times['tiled'][-1]:.1f} s, least counting {times['least counting'][-1]:.1f} s",
              flush=True)
    ratio = float(np.median(np.asarray(times["least counting"]) / np.asarray(times["tiled"])))
    print(f"floor: least counting / tiled product = {ratio:.3f} (median of {args.repeat} rounds' own ratios)")
    write_figures(Path(args.json) if args.json else RESULTS / "audit_floor.json",
                  {"pairs": args.n, "dim": args.d, "rounds": args.repeat, "floor_over_tiled_product": round(ratio, 3),
                   "rounds_seconds": {k: [round(t, 2) for t in v] for k, v in times.items()}})


if __name__ == "__main__":
    main()
