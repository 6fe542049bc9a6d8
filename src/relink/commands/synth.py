"""`relink synth`: write a synthetic paired cohort (images + reports + labels)."""

from __future__ import annotations

import argparse

from . import HelpFormatter

EPILOG = """\
examples:
  relink synth --out data/synth-internal --patients 8000 --seed 0
  relink synth --out data/synth-external --patients 4000 --seed 0 --site external
  relink synth --out /tmp/tiny --patients 20 --seed 1 --size 128 --splits 0.5,0.25,0.25 --workers 2

The folder is a cohort folder (cohort.parquet + images/) that every other
command accepts. The same seed gives byte-identical output for any --workers.
"""


def register(sub):
    p = sub.add_parser(
        "synth",
        help="generate a synthetic cohort of chest-radiograph-like images and reports",
        description="Generate a synthetic paired cohort: patients with several studies, one frontal\n"
                    "image and one report per study, CheXpert labels as a report labeler gives them.\n"
                    "Site 'internal' stands in for MIMIC-CXR, 'external' (shifted image appearance\n"
                    "and report style) for CheXpert Plus.",
        formatter_class=HelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument("--out", required=True, metavar="DIR", default=argparse.SUPPRESS,
                   help="cohort folder to write (new, empty, or an earlier synth output)")
    p.add_argument("--patients", required=True, type=int, metavar="N", default=argparse.SUPPRESS,
                   help="number of patients")
    p.add_argument("--seed", required=True, type=int, metavar="S", default=argparse.SUPPRESS, help="random seed")
    p.add_argument("--size", type=int, default=64, metavar="PX", help="image side in pixels (>= 32)")
    p.add_argument("--site", choices=("internal", "external"), default="internal",
                   help="which stand-in cohort to generate")
    p.add_argument("--splits", default=argparse.SUPPRESS, metavar="TR,VA,TE",
                   help="patient fractions for train,validate,test "
                        "(default: 0.6,0.1,0.3 internal; all test external)")
    p.add_argument("--workers", type=int, default=1, metavar="W", help="processes rendering in parallel")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..synth.generate import generate_cohort, parse_splits, read_marker

    text = getattr(args, "splits", None)
    splits = None if text is None else parse_splits(text)
    manifest = generate_cohort(args.out, patients=args.patients, seed=args.seed, size=args.size,
                               site=args.site, split_fractions=splits, workers=args.workers)
    info = read_marker(manifest.parent)
    print(f"wrote {info['pairs']} pairs from {info['patients']} patients ({info['cohort']}) to {manifest}")
    return 0
