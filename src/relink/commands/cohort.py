"""`relink cohort`: write a cohort manifest for an official dataset that stays where it is (one sub-command per
dataset; the loading rules live in :mod:`relink.loaders`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import HelpFormatter

SECTION_NAMES = ("findings", "impression")

DESCRIPTION = """\
Write a cohort manifest (one row per image-report pair) for an official dataset whose
images stay where the dataset keeps them: the manifest records the absolute image folder
as its image root, and image_path values relative to it."""

MIMIC_EPILOG = """\
examples:
  relink cohort mimic-cxr --images data/mimic-cxr-jpg/2.1.0 --reports data/mimic-cxr-reports \\
      --out cohorts/mimic/cohort.parquet
  relink cohort mimic-cxr --images JPG --reports REPORTS --out mimic.parquet \\
      --sections impression --views PA --skip-bad

--images is the MIMIC-CXR-JPG root (files/ and mimic-cxr-2.0.0-{metadata,split,chexpert}.csv.gz);
--reports holds files/pXX/pSUBJECT/sSTUDY.txt from MIMIC-CXR. One image per study: the view
listed first in --views, then the earliest StudyDate/StudyTime, then the smallest dicom_id.
Report sections follow the official MIMIC-CXR section parser; with none of the requested
sections the impression, findings, last paragraph or comparison is used, in that order.
"""

CHEXPERT_EPILOG = """\
examples:
  relink cohort chexpert-plus --root data/chexpert-plus --out cohorts/chexpert-plus/cohort.parquet
  relink cohort chexpert-plus --root ROOT --out cp.parquet --labels report --skip-bad

--root holds df_chexpert_plus_240401.csv, the PNG folder (PNG/train, PNG/valid) and the CheXbert
label files (chexbert_labels/*_fixed.json). The CSV's .jpg paths are read as the released .png
files. Split 'valid' becomes 'validate'. One image per study, as for mimic-cxr.
"""


def parse_sections(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip().lower() for p in text.split("+") if p.strip())
    unknown = [p for p in parts if p not in SECTION_NAMES]
    if not parts or unknown:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give findings, impression or findings+impression (any order)")
    return parts


def parse_views(text: str) -> tuple[str, ...]:
    views = tuple(v.strip().upper() for v in text.split(",") if v.strip())
    if not views:
        raise argparse.ArgumentTypeError("give at least one view, e.g. PA,AP")
    return views


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="FILE",
                   help="manifest to write (.parquet file, or a folder that gets cohort.parquet)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file that is not a cohort manifest written by relink")
    p.add_argument("--sections", type=parse_sections, default="findings+impression",
                   help="report sections used as the retrieval text, joined in this order")
    p.add_argument("--views", type=parse_views, default="PA,AP",
                   help="views kept, comma-separated, in order of preference")
    p.add_argument("--decode-images", action="store_true",
                   help="decode every chosen image with Pillow instead of only checking that the "
                        "file exists and is not empty (much slower)")
    p.add_argument("--skip-bad", action="store_true",
                   help="drop bad rows (missing image or report, empty report, bad label, ...) "
                        "and print how many, instead of stopping at the first")


def register(sub) -> None:
    p = sub.add_parser("cohort", help="write a cohort manifest for MIMIC-CXR or CheXpert Plus",
                       description=DESCRIPTION, formatter_class=HelpFormatter,
                       epilog="Run `relink cohort DATASET --help` for a dataset's options and examples.")
    datasets = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)

    m = datasets.add_parser("mimic-cxr", help="MIMIC-CXR-JPG images + MIMIC-CXR reports",
                            formatter_class=HelpFormatter, epilog=MIMIC_EPILOG)
    m.add_argument("--images", required=True, metavar="DIR", help="MIMIC-CXR-JPG root folder")
    m.add_argument("--reports", required=True, metavar="DIR", help="MIMIC-CXR reports folder")
    _common(m)
    m.set_defaults(func=run)

    c = datasets.add_parser("chexpert-plus", help="CheXpert Plus PNG images, reports and CheXbert labels",
                            formatter_class=HelpFormatter, epilog=CHEXPERT_EPILOG)
    c.add_argument("--root", required=True, metavar="DIR", help="CheXpert Plus release folder")
    c.add_argument("--labels", dest="label_source", choices=("impression", "findings", "report"),
                   default="impression", help="which CheXbert label file gives the 14 labels")
    c.add_argument("--labels-dir", metavar="DIR", default=None,
                   help="folder of the *_fixed.json label files (default: ROOT/chexbert_labels or ROOT)")
    _common(c)
    c.set_defaults(func=run)


def manifest_target(out: str) -> Path:
    """The manifest file ``--out`` names: a ``.parquet`` file, or ``cohort.parquet`` in a folder
    (an existing folder, or a path without a suffix)."""
    from ..cohort import MANIFEST_NAME
    from ..errors import RelinkError

    path = Path(out)
    if path.is_dir() or (path.suffix == "" and not path.exists()):
        return path / MANIFEST_NAME
    if path.suffix.lower() != ".parquet":
        raise RelinkError(f"--out {path}: a cohort manifest is a .parquet file (or give a folder)")
    return path


def run(args: argparse.Namespace) -> int:
    from ..cohort import write_cohort
    from ..guard import Output, claim
    from ..loaders import load_chexpert_plus, load_mimic_cxr, skip_summary

    # First, before reading a whole dataset: never replace a file that is not an earlier cohort manifest,
    # never write into the dataset read.
    target = manifest_target(args.out)
    inputs = [(flag, getattr(args, name, None)) for flag, name in
              (("--images", "images"), ("--reports", "reports"), ("--root", "root"), ("--labels-dir", "labels_dir"))]
    claim("cohort", [Output("--out", target)], inputs=inputs, overwrite=getattr(args, "overwrite", False))
    sections, views = args.sections, args.views
    # argparse applies `type` to string defaults too, but not when a caller builds Namespace by hand.
    sections = parse_sections(sections) if isinstance(sections, str) else sections
    views = parse_views(views) if isinstance(views, str) else views
    if args.dataset == "mimic-cxr":
        result = load_mimic_cxr(args.images, args.reports, sections=sections, views=views,
                                skip_bad=args.skip_bad, decode_images=args.decode_images)
    else:
        result = load_chexpert_plus(args.root, sections=sections, views=views,
                                    label_source=args.label_source, labels_dir=args.labels_dir,
                                    skip_bad=args.skip_bad, decode_images=args.decode_images)
    target = write_cohort(result.frame, target, image_root=result.image_root)
    if result.n_skipped:
        print(f"relink cohort: {skip_summary(result)} (--skip-bad)", file=sys.stderr)
    frame = result.frame
    splits = ", ".join(f"{k} {v}" for k, v in frame["split"].value_counts().sort_index().items())
    print(f"wrote {len(frame)} pairs from {frame['patient_id'].nunique()} patients ({splits}) to {target}")
    return 0
