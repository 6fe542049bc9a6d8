"""`relink train-heads`: the attacker who re-trains the projection heads on public pairs."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import HelpFormatter

DESCRIPTION = """\
Play the attacker who holds the released trunks (or any model over the same
trunk) and a public set of image-report pairs: train new projection heads
WITHOUT differential privacy on --public (its trunk features), from a random
start drawn from --seed, with CLIP's in-batch InfoNCE, then re-project the
--target rows through them. Audit the result like any embedding set: if the
re-trained heads re-link the target as well as the original heads, DP heads
protect nothing against this attacker.

--public and --target must come from the same trunk (same trunk dims, same
weights fingerprint when both record one) and share no pair and no patient.

--out receives embeddings/ (the target rows re-projected: an embedding set
for `relink audit`), heads.safetensors and train-heads.json (the settings and
the public set's size; no path, no report text). Nothing here is private
training: the seed fixes the run, and the heads carry no guarantee.
"""

EPILOG = """\
examples:
  relink train-heads --public emb/external --target emb/internal --out attack/retrained
  relink audit --embeddings attack/retrained/embeddings --out attack/retrained.csv
"""

INTERRUPTED = "interrupted; no output was written (an earlier --out is left as it was)"


def register(sub) -> None:
    from ..dp.retrain import RetrainSpec
    from ..options import add_spec_arguments

    p = sub.add_parser("train-heads", help="train non-private heads on public pairs (an attacker) and re-project a set",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--public", required=True, metavar="DIR", help="public embedding set with trunk features")
    p.add_argument("--target", required=True, metavar="DIR", help="embedding set with trunk features to re-link")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out that is not a train-heads output")
    add_spec_arguments(p, RetrainSpec)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api.train_heads import train_heads
    from ..dp.retrain import RetrainSpec
    from ..guard import Output, claim
    from ..io import writing
    from ..options import spec_from_args

    spec = spec_from_args(RetrainSpec, args)
    (out,) = claim("train-heads", [Output("--out", Path(args.out), "dir")], overwrite=args.overwrite,
                   inputs=[("--public", args.public), ("--target", args.target)])
    with writing(out):
        result = train_heads(args.public, args.target, spec, out=out)
    print(f"relink train-heads: {'; '.join(result.notes)} -> {out}")
    return 0
