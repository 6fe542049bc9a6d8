"""`relink synth`: write a synthetic paired cohort, or a synthetic dataset in an official layout (as
:data:`EPILOG` lists it) that ``relink cohort`` reads."""

from __future__ import annotations

import argparse

from ..options import argtype
from . import HelpFormatter

EPILOG = """\
examples:
  relink synth --out data/synth-internal --patients 8000 --seed 0
  relink synth --out data/synth-external --patients 4000 --seed 0 --site external
  relink synth --out /tmp/tiny --patients 20 --seed 1 --size 128 --splits 0.5,0.25,0.25 --workers 2
  relink synth --layout mimic-cxr --out data/fake-mimic --patients 1500 --seed 0
  relink synth --layout chexpert-plus --out data/fake-chexpert-plus --patients 1500 --seed 0 \\
      --canary-patient patient99999 --canary-phrase "amber walrus counts seven quiet lanterns before dawn"

--layout cohort: the folder is a cohort folder (cohort.parquet + images/) that every other
command accepts.

--layout mimic-cxr writes the MIMIC-CXR-JPG and MIMIC-CXR report layouts:
  DIR/mimic-cxr-jpg/      files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg and
                          mimic-cxr-2.0.0-{metadata,split,chexpert}.csv.gz   (--images)
  DIR/mimic-cxr-reports/  files/pXX/pSUBJECT/sSTUDY.txt                       (--reports)
--layout chexpert-plus writes DIR as a CheXpert Plus release root (--root):
  DIR/df_chexpert_plus_240401.csv, DIR/PNG/{train,valid}/..., DIR/chexbert_labels/*_fixed.json
Both hold the quirks the loaders handle (lateral-only studies, two frontal images,
impression-only and header-less reports, uncertain and missing labels) and DIR/synth.json
with the counts of each. --splits takes train,validate,test (mimic-cxr) or train,valid
(chexpert-plus) patient fractions. Canaries: --canary-patient gives one patient that id
(an 8-digit subject_id, or patientNNNNN); --canary-phrase is added to the findings of
--canary-reports other patients' first report; canary patients sit in the held-out split.

DIR must be new, empty or an earlier relink synth output; it is replaced only once the new
output is complete. The same seed gives byte-identical output for any --workers.
"""

LAYOUTS = ("cohort", "mimic-cxr", "chexpert-plus")


def register(sub):
    p = sub.add_parser(
        "synth",
        help="generate a synthetic cohort of chest-radiograph-like images and reports",
        description="Generate a synthetic paired cohort: patients with several studies, one frontal\n"
                    "image and one report per study, CheXpert labels as a report labeler gives them.\n"
                    "Site 'internal' stands in for MIMIC-CXR, 'external' (shifted image appearance\n"
                    "and report style) for CheXpert Plus. With --layout mimic-cxr or chexpert-plus,\n"
                    "write the same kind of data in the official release's files instead.",
        formatter_class=HelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument("--out", required=True, metavar="DIR", default=argparse.SUPPRESS,
                   help="folder to write (new, empty, or an earlier synth output)")
    p.add_argument("--patients", required=True, type=argtype(int, 1, 1_000_000), metavar="N",
                   default=argparse.SUPPRESS,
                   help="number of patients")
    p.add_argument("--seed", required=True, type=argtype(int, 0, 2**63 - 1), metavar="S", default=argparse.SUPPRESS,
                   help="random seed")
    p.add_argument("--layout", choices=LAYOUTS, default="cohort",
                   help="cohort: a relink cohort folder; mimic-cxr / chexpert-plus: the official files")
    p.add_argument("--size", type=argtype(int, 32, 1024), default=64, metavar="PX", help="image side in pixels")
    p.add_argument("--site", choices=("internal", "external"), default=argparse.SUPPRESS,
                   help="which stand-in cohort to generate (--layout cohort only; default: internal)")
    p.add_argument("--splits", default=argparse.SUPPRESS, metavar="FRACTIONS",
                   help="patient fractions per split, comma-separated (default: 0.6,0.1,0.3 internal, "
                        "all test external; mimic-cxr 0.6,0.1,0.3; chexpert-plus 0.9,0.1)")
    p.add_argument("--canary-patient", default=argparse.SUPPRESS, metavar="ID",
                   help="give one patient this id (official layouts only)")
    p.add_argument("--canary-phrase", default=argparse.SUPPRESS, metavar="TEXT",
                   help="add this phrase to the findings of --canary-reports reports (official layouts only)")
    p.add_argument("--canary-reports", type=argtype(int, 1, 10_000), default=argparse.SUPPRESS, metavar="K",
                   help="how many reports get --canary-phrase (default: 3)")
    p.add_argument("--workers", type=argtype(int, 1, 256), default=1, metavar="W", help="processes rendering in parallel")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..errors import RelinkError
    from ..guard import Output, claim
    from ..synth.generate import parse_splits

    claim("synth", [Output("--out", Path(args.out), "dir")], overwrite=None)  # no inputs; no --overwrite

    text = getattr(args, "splits", None)
    splits = None if text is None else parse_splits(text)
    layout = getattr(args, "layout", "cohort")
    canaries = {k: getattr(args, k) for k in ("canary_patient", "canary_phrase", "canary_reports") if hasattr(args, k)}
    if layout == "cohort":
        if canaries:
            flag = "--" + next(iter(canaries)).replace("_", "-")
            raise RelinkError(f"{flag} needs --layout mimic-cxr or chexpert-plus")
        return _cohort(args, splits)
    if hasattr(args, "site"):
        raise RelinkError("--site applies to --layout cohort only")
    if "canary_reports" in canaries and "canary_phrase" not in canaries:
        raise RelinkError("--canary-reports needs --canary-phrase")
    if layout == "mimic-cxr":
        from ..synth.official_mimic import write_mimic_cxr as write
    else:
        from ..synth.official_chexpert import write_chexpert_plus as write
    done = write(args.out, patients=args.patients, seed=args.seed, size=args.size, split_fractions=splits,
                 workers=args.workers, **canaries)
    splits_text = ", ".join(f"{k} {v}" for k, v in done.pairs_per_split.items())
    roots = ", ".join(f"{role} {path}" for role, path in done.roots.items())
    print(f"wrote {done.studies} studies ({done.images} images, {done.frontal_studies} with a frontal image: "
          f"{splits_text}) from {done.patients} patients in the {layout} layout; {roots}")
    return 0


def _cohort(args, splits) -> int:
    from ..synth.generate import generate_cohort, read_marker

    manifest = generate_cohort(args.out, patients=args.patients, seed=args.seed, size=args.size,
                               site=getattr(args, "site", "internal"), split_fractions=splits, workers=args.workers)
    info = read_marker(manifest.parent)
    print(f"wrote {info['pairs']} pairs from {info['patients']} patients ({info['cohort']}) to {manifest}")
    return 0
