"""Cost of one DP-SGD epoch of the two heads, as a ratio to the non-private epoch.

Same heads, same cached trunk features, same bank, same expected batch size:

* non-private: plain Adam on the bank InfoNCE (shuffled batches);
* private, ``grad_sample_mode="hooks"``: Opacus materialises each unit's
  gradient (B x out x in per head) and clips it;
* private, ``grad_sample_mode="ghost"``: Opacus computes per-unit gradient
  *norms* only (ghost clipping) and a second, reweighted backward pass.

The noise multiplier is fixed (1.0) so that the accountant's sigma search is
not timed; Poisson sampling as in training. Trunk and embedding dims default
to a ViT-B/16 CLIP (768 image, 512 text, 512 embed). Each mode runs one
warm-up step, then ``--repeats`` epochs; the best epoch is reported. Absolute
times depend on the machine and its load; the ratios are the result.

    python benchmarks/dp.py                         # 8,192 pairs, batch 256
    python benchmarks/dp.py --n 2048 --repeats 1    # quick
    python benchmarks/dp.py --unit patient          # patients as the sampled unit
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

from relink.dp import steps as T
from relink.dp.heads_data import make_dataset
from relink.dp.spec import MitigationSpec
from relink.embeddings import EmbeddingSet
from relink.models.heads import Heads


def features(n: int, di: int, dt: int, per_patient: int, seed: int) -> EmbeddingSet:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 64)).astype(np.float32)
    image = z @ rng.standard_normal((64, di)).astype(np.float32) + rng.standard_normal((n, di)).astype(np.float32)
    text = z @ rng.standard_normal((64, dt)).astype(np.float32) + rng.standard_normal((n, dt)).astype(np.float32)
    rows = pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)], "patient_id": [f"q{i // per_patient}" for i in range(n)]})
    unit = np.ones((n, 1), dtype=np.float32)
    return EmbeddingSet(rows, unit, unit, image, text)


def epoch_seconds(setup: T.Setup, repeats: int) -> float:
    batch = next(b for b in setup.loader if len(b[0]))
    T.train_step(setup, batch)  # warm-up: hooks, allocator, first-call costs
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in setup.loader:
            T.train_step(setup, batch)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8192, help="private units' pairs")
    ap.add_argument("--bank", type=int, default=1024, help="negative bank rows")
    ap.add_argument("--dims", default="768,512,512", help="image trunk, text trunk, embed")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--unit", choices=("pair", "patient"), default="pair")
    ap.add_argument("--per-patient", type=int, default=3, help="pairs per patient (for --unit patient)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    di, dt, e = (int(x) for x in args.dims.split(","))
    train = features(args.n, di, dt, args.per_patient, args.seed)
    bank = features(args.bank, di, dt, 1, args.seed + 1)
    torch.manual_seed(args.seed)
    init = Heads(image=nn.Linear(di, e, bias=False), text=nn.Linear(dt, e, bias=False))
    dataset = make_dataset(train, args.unit)
    bank_t = (torch.as_tensor(bank.image_trunk), torch.as_tensor(bank.text_trunk))
    common = dict(batch_size=args.batch_size, lr=1e-3, temperature=0.07, reproducible_noise=args.seed)
    print(f"DP head-training epoch cost: {len(dataset)} {args.unit}s, bank {args.bank}, dims {di}/{dt} -> {e}, "
          f"batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    base = epoch_seconds(T.build(dataset, bank_t, init, MitigationSpec(private=False, **common), args.seed), args.repeats)
    print(f"  non-private epoch       1.00x  ({base:.2f} s)")
    for mode in ("hooks", "ghost"):
        spec = MitigationSpec(noise_multiplier=1.0, clip_norm=1.0, grad_sample_mode=mode, **common)
        setup = T.build(dataset, bank_t, init, spec, args.seed)
        t = epoch_seconds(setup, args.repeats)
        print(f"  private, {mode:<6} epoch  {t / base:5.2f}x  ({t:.2f} s)")


if __name__ == "__main__":
    main()
