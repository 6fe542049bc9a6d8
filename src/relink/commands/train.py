"""`relink train`: train a ladder of small open_clip models on a cohort's train split.

The rungs are checkpoints of one contrastive run at increasing steps, from
weakly to strongly aligned; each is an open_clip checkpoint folder that every
other command takes as --model. For real cohorts, fine-tune a public model
with open_clip's own trainer instead (docs/fine-tuning.md); --export-csv
writes the CSV it reads.
"""

from __future__ import annotations

import argparse

from ..options import argtype
from . import HelpFormatter

INTERRUPTED = ("interrupted; rungs saved so far are kept in OUT.work (beside --out) with the optimizer state; "
               "run the same command again to resume after the last one")


def parse_steps(text: str) -> list[int]:
    """``"20,100,400"`` -> ``[20, 100, 400]``: whole steps >= 1."""
    check = argtype(int, 1)
    steps = [check(t.strip()) for t in text.split(",") if t.strip()]
    if not steps:
        raise argparse.ArgumentTypeError("give one or more steps, e.g. 20,100,400")
    return steps

EPILOG = """\
examples:
  relink train --cohort data/synthetic --config relink-vit-tiny --out models/ladder
  relink train --cohort data/synthetic --config relink-vit-tiny --out models/ladder --epochs 5 --rungs 4
  relink train --cohort data/synthetic --config relink-vit-tiny --out models/l2 --save-at 20,100,400 --max-pairs 5000
  relink train --cohort mimic.parquet --export-csv mimic-train.csv      # for open_clip_train (docs/fine-tuning.md)

The ladder is trained in OUT.work and appears at --out in one step when
complete. An interrupted run resumes after its last saved rung when started
again with the same settings; a finished ladder is left alone. An --out that
is not an earlier `relink train` output, or a ladder trained with other
settings, is refused unless --overwrite (and replaced only when the new
ladder is complete).
"""


def register(sub):
    p = sub.add_parser("train", help="train a ladder of small open_clip models (or export a training CSV)",
                       description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--cohort", required=True, help="cohort folder or manifest (.parquet)")
    p.add_argument("--config", default="relink-vit-tiny",
                   help="model to train: an architecture name (random init) or a model spec to fine-tune")
    p.add_argument("--out", help="ladder folder to write (rung-1, rung-2, ..., ladder.json)")
    p.add_argument("--epochs", type=argtype(int, 1), default=3, help="passes over the training pairs")
    p.add_argument("--batch-size", type=argtype(int, 1), default=128, help="pairs per step (the contrastive negatives)")
    p.add_argument("--lr", type=argtype(float, 0, low_open=True), default=5e-4, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=argtype(float, 0), default=0.1,
                   help="AdamW weight decay (not on gains, biases, temperature)")
    p.add_argument("--warmup", type=argtype(int, 0), default=None,
                   help="linear warmup steps (default: 5%% of the steps)")
    p.add_argument("--seed", type=argtype(int, 0, 2**63 - 1), default=0,
                   help="seed of initialisation, data order and augmentation")
    rungs = p.add_mutually_exclusive_group()
    rungs.add_argument("--save-at", type=parse_steps, default=None, metavar="STEP,STEP,...",
                       help="steps at which to save a rung (the last one ends training)")
    rungs.add_argument("--rungs", type=argtype(int, 1), default=3,
                       help="number of rungs, geometrically spaced in steps (T/9, T/3, T)")
    p.add_argument("--max-pairs", type=argtype(int, 1), default=None,
                   help="train on a seeded random subset of this many pairs")
    p.add_argument("--split", default="train", help="cohort split to train on (or to export)")
    p.add_argument("--no-augment", action="store_true", help="no random shifts of the training images")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an --out that holds a ladder with other settings, or is not a relink train output")
    p.add_argument("--export-csv", metavar="FILE", default=None,
                   help="only write the tab-separated CSV open_clip_train reads (absolute image paths) and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..errors import RelinkError
    from ..guard import Output, claim, existing_path
    from ..models.ladder_train import export_training_csv, read_ladder, train_ladder
    from ..workdir import work_path

    csv = None if not args.export_csv else Path(args.export_csv)
    out = Path(args.out) if args.out and not csv else None
    # the output guard: every file written (the CSV's side file too), apart from the inputs
    claim("train", [csv and Output("--export-csv", csv, sides=(csv.with_name(csv.name + ".provenance.json"),)),
                    out and Output("--out", out, "dir", work=work_path(out))],
          inputs=[("--cohort", args.cohort), ("--config", existing_path(args.config))], overwrite=args.overwrite)
    if args.export_csv:
        target = csv
        path = export_training_csv(args.cohort, target, split=args.split)
        print(path)
        return 0
    if not args.out:
        raise RelinkError("--out is required (or --export-csv FILE to only write a training CSV)")
    out = train_ladder(
        args.cohort, config=args.config, out_dir=args.out, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup, seed=args.seed, save_at=args.save_at,
        rungs=args.rungs, max_pairs=args.max_pairs, device=args.device, augment=not args.no_augment,
        split=args.split, overwrite=args.overwrite, progress=not args.quiet,
    )
    for rung in read_ladder(out)["rungs"]:
        print(f"{rung['path']}\tstep {rung['step']}\tpairs seen {rung['pairs_seen']}\tloss {rung['loss']:.4f}")
    return 0
