"""`relink embed`: embed a cohort with an open_clip model into an EmbeddingSet folder."""

from __future__ import annotations

from pathlib import Path

from ..options import argtype
from . import JOIN_TIMEOUT, HelpFormatter, add_timeout

INTERRUPTED = ("interrupted; finished shards are kept in OUT.work (beside --out); "
               "run the same command again to resume")

EPILOG = """\
examples:
  relink embed --cohort data/synthetic --model models/ladder/rung-3 --out emb/rung-3
  relink embed --cohort mimic.parquet --model ViT-B-16:openai --out emb/vitb16 --batch-size 512 --workers 8
  relink embed --cohort data/synthetic --model relink-vit-tiny --out emb/random --skip-bad
  torchrun --nproc_per_node 4 -m relink embed --distributed --cohort mimic.parquet --model DIR --out emb/x

An interrupted run resumes from the work folder OUT.work next to --out; the
result is identical to an uninterrupted run. An existing --out made from the
same weights and cohort is reused at once; a changed model or cohort is
recomputed and replaces it. An --out that is not an earlier `relink embed`
output is refused unless --overwrite. With --distributed, each process of a
torchrun launch embeds every P-th shard and the first merges them: the
result equals a one-process run; each process waits at most --timeout seconds
for the others to join. --out and OUT.work never lie inside --cohort or
--model, even with --overwrite.
"""


def register(sub):
    p = sub.add_parser("embed", help="embed a cohort into an EmbeddingSet (resumable, cached)",
                       description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--cohort", required=True, help="cohort folder or manifest (.parquet)")
    p.add_argument("--model", required=True,
                   help="model spec: NAME, NAME:TAG, NAME:CHECKPOINT, hf-hub:ORG/REPO or a checkpoint folder")
    p.add_argument("--out", required=True, help="EmbeddingSet folder to write")
    p.add_argument("--batch-size", type=argtype(int, 1, 1 << 16), default=256, help="pairs per forward pass")
    p.add_argument("--workers", type=argtype(int, 0, 256), default=None,
                   help="DataLoader workers per process (default: on a GPU the cores left after the model's, "
                        "at most 8; on the CPU none up to 2 cores per process, else a quarter of them)")
    p.add_argument("--shard-size", type=argtype(int, 1, 10_000_000), default=4096, help="rows per resumable shard")
    p.add_argument("--device", default="auto", help="auto (the GPU if there is one), cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "amp"),
                   help="auto: mixed precision on a GPU, fp32 on the CPU")
    p.add_argument("--skip-bad", action="store_true", help="leave out rows whose image cannot be read (counted in meta.json)")
    p.add_argument("--no-trunk", action="store_true",
                   help="do not store pre-projection features (the DP step needs them)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an --out folder that is not an earlier relink embed output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="run as one process of a torchrun launch (`torchrun --nproc_per_node P -m relink embed "
                        "--distributed ...`): gloo on CPU, nccl on GPU")
    add_timeout(p)
    p.set_defaults(func=run)


def embed_from_args(args, comm=None):
    from ..embed import embed_cohort

    return embed_cohort(
        args.cohort, args.model, args.out, batch_size=args.batch_size, num_workers=args.workers,
        shard_size=args.shard_size, device=args.device, skip_bad=args.skip_bad, with_trunk=not args.no_trunk,
        progress=not args.quiet, precision=args.precision, overwrite=getattr(args, "overwrite", False), comm=comm,
    )


def run_distributed(args) -> int:
    """Run as one rank of a torchrun group; only rank 0 prints (the result, or the one error line)."""
    from ..embed.distributed import TorchComm, destroy_process_group, init_process_group
    from ..errors import RelinkError

    args.device = init_process_group(args.device, timeout=getattr(args, "timeout", JOIN_TIMEOUT))
    comm = TorchComm()
    try:
        out = embed_from_args(args, comm=comm)
    except RelinkError:
        if comm.rank != 0:  # every rank holds the same error; one line is enough
            raise SystemExit(2) from None
        raise
    finally:
        destroy_process_group()
    if comm.rank == 0:
        print(out)
    return 0


def claim_outputs(args) -> None:
    """The output guard (:func:`relink.guard.claim`): the set folder and its work folder, apart from the inputs."""
    from ..guard import Output, claim, existing_path
    from ..workdir import work_path

    claim("embed", [Output("--out", Path(args.out), "dir", work=work_path(args.out))],
          inputs=[("--cohort", args.cohort), ("--model", existing_path(args.model))],
          overwrite=getattr(args, "overwrite", False))


def run(args) -> int:
    claim_outputs(args)
    if args.distributed:
        return run_distributed(args)
    out = embed_from_args(args)
    print(out)
    return 0
