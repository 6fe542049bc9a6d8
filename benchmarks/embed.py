"""Is the data pipeline the bottleneck of `relink embed`? Does torchrun scale?

Prints ratios measured within one run (the machine may be shared; absolute
times mean little):

1. embedding throughput / forward-only throughput. Forward-only runs the
   same model pass as the embedder (trunks, heads, normalisation, copy to
   numpy) over the same batches, pre-loaded in memory; the embedder decodes
   PNGs in DataLoader workers and writes shards. >= 0.9 means decoding is not
   the bottleneck.
2. throughput of `torchrun --nproc_per_node 2` / `--nproc_per_node 1`
   (wall time of each launch, start-up included).

Usage:
    python benchmarks/embed.py                       # synthetic cohort made on the fly
    python benchmarks/embed.py --cohort DIR --model SPEC --batch-size 256 --workers 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def forward_only(lm, cohort, batch_size: int, device: str) -> tuple[float, int]:
    """Seconds for the embedder's model pass over pre-loaded batches, and the row count."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from relink.embed.dataset import PairDataset
    from relink.models.trunks import encode_trunks_and_heads

    files = [str(cohort.image_root / p) for p in cohort.frame["image_path"]]
    ds = PairDataset(files, cohort.frame["report"].tolist(), lm.preprocess, lm.tokenizer, lm.preprocess_cfg)
    n = len(ds)
    batches = []
    for start in range(0, n, batch_size):
        items = [ds[i] for i in range(start, min(start + batch_size, n))]
        images = ds.model_input(torch.stack([it["image"] for it in items]).to(device))
        batches.append((images, torch.stack([it["tokens"] for it in items]).to(device)))
    amp = torch.autocast("cuda", dtype=torch.float16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), amp:  # warm-up pass
        encode_trunks_and_heads(lm.model, *batches[0])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode(), amp:
        for images, tokens in batches:
            it, ip, tt, tp = encode_trunks_and_heads(lm.model, images, tokens)
            out = [F.normalize(ip.float(), dim=-1), F.normalize(tp.float(), dim=-1), it.float(), tt.float()]
            [np.asarray(o.cpu()) for o in out]
    return time.perf_counter() - t0, n


def torchrun_seconds(nproc: int, cohort: str, model: str, out: Path, batch_size: int, workers: int, shard_size: int) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // nproc))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "relink.embed.distributed", "--cohort", cohort, "--model", model, "--out", str(out),
           "--batch-size", str(batch_size), "--workers", str(workers), "--shard-size", str(shard_size), "--quiet"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"torchrun failed:\n{res.stderr[-2000:]}")
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cohort", help="cohort folder (default: a synthetic one, --patients patients)")
    p.add_argument("--patients", type=int, default=1500)
    p.add_argument("--rows", type=int, default=None, help="use only the first ROWS pairs (for slow models)")
    p.add_argument("--model", default="relink-vit-tiny")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: as relink embed)")
    p.add_argument("--shard-size", type=int, default=1024)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repetitions; the best time of each counts")
    p.add_argument("--skip-torchrun", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from relink.cohort import read_cohort
    from relink.embed import embed_cohort
    from relink.embed.dataset import default_workers
    from relink.embed.run import load_for_embedding, resolve_device

    tmp = Path(tempfile.mkdtemp(prefix="relink-bench-"))
    try:
        cohort_dir = args.cohort
        if cohort_dir is None:
            from relink.synth import generate_cohort

            cohort_dir = str(tmp / "cohort")
            generate_cohort(cohort_dir, patients=args.patients, seed=0)
        cohort = read_cohort(cohort_dir)
        if args.rows is not None and args.rows < len(cohort):
            from relink.cohort import write_cohort

            cohort_dir = str(write_cohort(cohort.frame.iloc[:args.rows], tmp / "subset", image_root=cohort.image_root))
            cohort = read_cohort(cohort_dir)
        device = resolve_device(args.device)
        workers = default_workers(1, device) if args.workers is None else args.workers
        lm = load_for_embedding(args.model, device)
        print(f"cohort: {len(cohort)} pairs; model {args.model}; device {device}; batch {args.batch_size}; workers {workers}")

        fwd, emb = [], []
        for r in range(args.repeat):  # interleaved, best of each: the machine may be shared
            fwd_s, n = forward_only(lm, cohort, args.batch_size, device)
            fwd.append(fwd_s)
            t0 = time.perf_counter()
            embed_cohort(cohort, lm, tmp / f"emb{r}", batch_size=args.batch_size, num_workers=workers,
                         shard_size=args.shard_size, device=device, progress=False)
            emb.append(time.perf_counter() - t0)
        fwd_s, emb_s = min(fwd), min(emb)
        print(f"forward only   : {n / fwd_s:9.0f} pairs/s")
        print(f"relink embed   : {n / emb_s:9.0f} pairs/s  (decode in {workers} worker(s), shards, merge)")
        print(f"ratio embed / forward-only = {fwd_s / emb_s:.2f}")

        if not args.skip_torchrun:
            ones, twos = [], []
            for r in range(args.repeat):
                ones.append(torchrun_seconds(1, cohort_dir, args.model, tmp / f"t1-{r}", args.batch_size, workers,
                                             args.shard_size))
                twos.append(torchrun_seconds(2, cohort_dir, args.model, tmp / f"t2-{r}", args.batch_size,
                                             default_workers(2, device) if args.workers is None else args.workers,
                                             args.shard_size))
            one, two = min(ones), min(twos)
            same = all((tmp / "t1-0" / f).read_bytes() == (tmp / "t2-0" / f).read_bytes()
                       for f in ("image.npy", "text.npy", "image_trunk.npy", "text_trunk.npy"))
            print(f"torchrun 2 processes / 1 process throughput = {one / two:.2f}  "
                  f"(best wall {one:.1f} s vs {two:.1f} s incl. start-up; outputs byte-identical: {same})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
