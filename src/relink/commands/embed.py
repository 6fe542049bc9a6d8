"""`relink embed`: embed a cohort with an open_clip model into an EmbeddingSet folder."""

from __future__ import annotations

from pathlib import Path

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
    from ..api.embed import EmbedSpec
    from ..options import add_spec_arguments

    p = sub.add_parser("embed", help="embed a cohort into an EmbeddingSet (resumable, cached)",
                       description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--cohort", required=True, help="cohort folder or manifest (.parquet)")
    p.add_argument("--model", required=True,
                   help="model spec: NAME, NAME:TAG, NAME:CHECKPOINT, hf-hub:ORG/REPO or a checkpoint folder")
    p.add_argument("--out", required=True, help="EmbeddingSet folder to write")
    add_spec_arguments(p, EmbedSpec)
    p.add_argument("--overwrite", action="store_true",
                   help="replace an --out folder that is not an earlier relink embed output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="run as one process of a torchrun launch (`torchrun --nproc_per_node P -m relink embed "
                        "--distributed ...`): gloo on CPU, nccl on GPU")
    add_timeout(p)
    p.set_defaults(func=run)


def embed_from_args(args, comm=None):
    from ..api.embed import EmbedSpec, embed
    from ..embed.merge import say
    from ..options import spec_from_args

    spec = spec_from_args(EmbedSpec, args)
    result = embed(args.cohort, args.model, args.out, spec, overwrite=getattr(args, "overwrite", False),
                   progress=not args.quiet, comm=comm, on_note=say)
    return result.outputs[0]


def run_distributed(args) -> int:
    """Run as one rank of a torchrun group; only rank 0 prints (the result, or the one error line)."""
    from ..embed.distributed import TorchComm, destroy_process_group, init_process_group
    from ..errors import RelinkError

    # the device the process group settled on is the one every rank embeds with
    args.device = init_process_group(getattr(args, "device", "auto"), timeout=getattr(args, "timeout", JOIN_TIMEOUT))
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


def run(args) -> int:
    from ..guard import Output, claim, existing_path
    from ..workdir import work_path

    # the output guard: the set folder and its work folder, apart from the inputs
    claim("embed", [Output("--out", Path(args.out), "dir", work=work_path(args.out))],
          inputs=[("--cohort", args.cohort), ("--model", existing_path(args.model))],
          overwrite=getattr(args, "overwrite", False))
    if args.distributed:
        return run_distributed(args)
    out = embed_from_args(args)
    print(out)
    return 0
