"""Is the data pipeline the bottleneck of `relink embed`? What does shared decoding save? Does torchrun scale?

Prints ratios measured within one run (the machine may be shared; absolute
times mean little), best of ``--repeat`` interleaved repetitions:

1. embedding throughput / forward-only throughput. Forward-only runs the
   same model pass as the embedder (trunks, heads, normalisation, copy to
   numpy) over the same batches, pre-loaded in memory; the embedder decodes
   PNGs in DataLoader workers and writes shards. >= 0.9 means decoding is not
   the bottleneck.
2. three rungs embedded one model at a time (``embed_cohort`` x 3: every
   PNG decoded and every report tokenized three times) / the same three with
   shared inputs (``embed_many``: once), in two shapes: all rungs on the whole
   cohort, and the paper's shape (the strongest rung on the whole cohort, the
   two weaker ones on its test split). Outputs are checked byte-identical.
   Also printed: the time spent outside the model (decoding, tokenizing,
   writing), which sharing divides and which does not move with the speed
   of the forward pass on a loaded machine.
3. throughput of `torchrun --nproc_per_node 2` / `--nproc_per_node 1`
   (wall time of each launch, start-up included).

Usage:
    python benchmarks/embed.py                       # synthetic cohort (~4,000 pairs) made on the fly
    python benchmarks/embed.py --only shared         # just the shared-input comparison
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


def rungs(model: str, device: str, k: int = 3) -> list:
    """``k`` models with the same inputs and different weights (stand-ins for the ladder's rungs)."""
    import torch

    from relink.models import load_model

    out = []
    for seed in range(k):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out.append(load_model(model, device=device))
    return out


def shared_vs_separate(cohort, model: str, device: str, tmp: Path, batch_size: int, workers: int, shard_size: int,
                       repeat: int) -> None:
    """Print separate / shared wall time for three rungs, whole cohort and paper shape (see module doc).

    Also the time outside the model (decoding, tokenizing, collating, writing
    shards and merging): what sharing the inputs removes, and a ratio that
    does not move with the forward pass's speed on a shared machine.
    """
    import relink.embed.fanout as stream
    from relink.cohort import Cohort
    from relink.embed import EmbedJob, embed_cohort, embed_many

    models = rungs(model, device)
    test = (cohort.frame["split"] == "test").to_numpy()
    subset = Cohort(cohort.frame[test].reset_index(drop=True), cohort.image_root, cohort.manifest)
    shapes = {"3 rungs x whole cohort": [None, None, None], "paper shape (2 rungs on test split)": [test, test, None]}
    kw = dict(batch_size=batch_size, num_workers=workers, shard_size=shard_size, device=device, progress=False)
    in_model = [0.0]
    real = stream.embed_batch

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            in_model[0] += time.perf_counter() - t0

    stream.embed_batch = timed
    try:
        for label, masks in shapes.items():
            sep, shr, sep_out, shr_out = [], [], [], []
            for r in range(repeat):  # interleaved; fresh folders each time (no cache hits)
                root = tmp / f"shared-{r}"
                in_model[0], t0 = 0.0, time.perf_counter()
                for k, (lm, mask) in enumerate(zip(models, masks)):
                    embed_cohort(cohort if mask is None else subset, lm, root / f"sep{k}", **kw)
                sep.append(time.perf_counter() - t0)
                sep_out.append(sep[-1] - in_model[0])
                in_model[0], t0 = 0.0, time.perf_counter()
                embed_many(cohort, [EmbedJob(lm, root / f"shr{k}", mask) for k, (lm, mask) in enumerate(zip(models, masks))],
                           **kw)
                shr.append(time.perf_counter() - t0)
                shr_out.append(shr[-1] - in_model[0])
                same = all((root / f"sep{k}" / f"{a}.npy").read_bytes() == (root / f"shr{k}" / f"{a}.npy").read_bytes()
                           for k in range(3) for a in ("image", "text", "image_trunk", "text_trunk"))
                if not same:
                    raise SystemExit("shared-input embedding differs from one-model-at-a-time embedding")
                shutil.rmtree(root)
            pairs = sum(len(cohort) if m is None else int(m.sum()) for m in masks)
            print(f"{label} ({pairs} pairs embedded, outputs byte-identical):\n"
                  f"    wall time          separate {min(sep):6.1f} s, shared inputs {min(shr):6.1f} s; "
                  f"ratio separate / shared = {min(sep) / min(shr):.2f}\n"
                  f"    outside the model  separate {min(sep_out):6.1f} s, shared inputs {min(shr_out):6.1f} s; "
                  f"ratio = {min(sep_out) / min(shr_out):.2f}")
    finally:
        stream.embed_batch = real


def torchrun_seconds(nproc: int, cohort: str, model: str, out: Path, batch_size: int, workers: int, shard_size: int) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // nproc))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "relink", "embed", "--distributed", "--cohort", cohort, "--model", model, "--out", str(out),
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
    p.add_argument("--only", choices=("forward", "shared", "torchrun"), default=None, help="run one comparison")
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

        if args.only in (None, "shared"):
            shared_vs_separate(cohort, args.model, device, tmp, args.batch_size, workers, args.shard_size, args.repeat)
        if args.only == "shared":
            return 0
        fwd, emb = [], []
        for r in range(args.repeat if args.only in (None, "forward") else 0):  # interleaved, best of each
            fwd_s, n = forward_only(lm, cohort, args.batch_size, device)
            fwd.append(fwd_s)
            t0 = time.perf_counter()
            embed_cohort(cohort, lm, tmp / f"emb{r}", batch_size=args.batch_size, num_workers=workers,
                         shard_size=args.shard_size, device=device, progress=False)
            emb.append(time.perf_counter() - t0)
        if fwd:
            fwd_s, emb_s = min(fwd), min(emb)
            print(f"forward only   : {n / fwd_s:9.0f} pairs/s")
            print(f"relink embed   : {n / emb_s:9.0f} pairs/s  (decode in {workers} worker(s), shards, merge)")
            print(f"ratio embed / forward-only = {fwd_s / emb_s:.2f}")

        if not args.skip_torchrun and args.only in (None, "torchrun"):
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
