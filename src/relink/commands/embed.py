"""`relink embed`: embed a cohort with an open_clip model into an EmbeddingSet folder."""

from __future__ import annotations

from . import HelpFormatter

EPILOG = """\
examples:
  relink embed --cohort data/synthetic --model models/ladder/rung-3 --out emb/rung-3
  relink embed --cohort mimic.parquet --model ViT-B-16:openai --out emb/vitb16 --batch-size 512 --workers 8
  relink embed --cohort data/synthetic --model relink-vit-tiny --out emb/random --skip-bad
  torchrun --nproc_per_node 4 -m relink.embed.distributed --cohort mimic.parquet --model DIR --out emb/x

An interrupted run resumes from the work folder OUT.work next to --out; the
result is identical to an uninterrupted run. An existing --out made from the
same weights and cohort is reused at once; a changed model or cohort is
recomputed.
"""


def add_arguments(p) -> None:
    p.add_argument("--cohort", required=True, help="cohort folder or manifest (.parquet)")
    p.add_argument("--model", required=True,
                   help="model spec: NAME, NAME:TAG, NAME:CHECKPOINT, hf-hub:ORG/REPO or a checkpoint folder")
    p.add_argument("--out", required=True, help="EmbeddingSet folder to write")
    p.add_argument("--batch-size", type=int, default=256, help="pairs per forward pass")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers per process; None: the cores left after the model's, at most 8")
    p.add_argument("--shard-size", type=int, default=4096, help="rows per resumable shard")
    p.add_argument("--device", default="auto", help="auto (the GPU if there is one), cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "amp"),
                   help="auto: mixed precision on a GPU, fp32 on the CPU")
    p.add_argument("--skip-bad", action="store_true", help="leave out rows whose image cannot be read (counted in meta.json)")
    p.add_argument("--no-trunk", action="store_true",
                   help="do not store pre-projection features (the DP step needs them)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(sub):
    p = sub.add_parser("embed", help="embed a cohort into an EmbeddingSet (resumable, cached)",
                       description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    add_arguments(p)
    p.add_argument("--distributed", action="store_true",
                   help="split the shards across the processes of a torchrun launch (gloo on CPU, nccl on GPU)")
    p.set_defaults(func=run)


def embed_from_args(args, comm=None):
    from ..embed import embed_cohort

    return embed_cohort(
        args.cohort, args.model, args.out, batch_size=args.batch_size, num_workers=args.workers,
        shard_size=args.shard_size, device=args.device, skip_bad=args.skip_bad, with_trunk=not args.no_trunk,
        progress=not args.quiet, precision=args.precision, comm=comm,
    )


def run(args) -> int:
    if getattr(args, "distributed", False):
        from ..embed.distributed import run_distributed

        run_distributed(args)
        return 0
    out = embed_from_args(args)
    print(out)
    return 0
