"""Synthetic cohort generation speed: pairs/s at 64 px with 1 and 2 workers.

Prints wall-clock pairs/s for each worker count, their ratio, and for one
worker also pairs per CPU-second of this process (the figure that a loaded,
shared machine disturbs least). Run:

    python benchmarks/synth.py [--patients 1500] [--size 64] [--dir /dev/shm]

``--dir`` picks the disk written to (default: the system temporary folder);
a RAM disk takes file-system latency out of the figure.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from relink.synth import generate_cohort
from relink.synth.generate import read_marker


def measure(root: Path, patients: int, size: int, workers: int) -> tuple[int, float, float]:
    out = root / f"w{workers}"
    wall, cpu = time.perf_counter(), time.process_time()
    generate_cohort(out, patients, seed=0, size=size, workers=workers, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pairs = read_marker(out)["pairs"]
    shutil.rmtree(out)
    return pairs, wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=1500)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--dir", default=None, help="where to write the temporary cohorts")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="relink-bench-synth-", dir=args.dir) as tmp:
        root = Path(tmp)
        measure(root, 20, args.size, 1)  # warm imports and grids
        rates = {}
        for workers in (1, 2):
            pairs, wall, cpu = measure(root, args.patients, args.size, workers)
            rates[workers] = pairs / wall
            extra = f", {pairs / cpu:.0f} pairs per CPU-second" if workers == 1 else ""
            print(f"workers={workers}: {pairs} pairs at {args.size} px in {wall:.1f} s -> {rates[workers]:.0f} pairs/s{extra}")
        print(f"speed-up 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
