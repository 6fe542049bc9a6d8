"""`relink audit`: the re-linkage audit of an EmbeddingSet, written as a tidy metric table."""

from __future__ import annotations

from ..errors import RelinkError
from . import HelpFormatter

EXAMPLES = """\
examples:
  relink audit --embeddings runs/emb/ladder-3 --out results/audit.parquet
  relink audit --embeddings runs/emb/ladder-3 --pools 10,100,full --k 1,5 \\
      --hard-negatives --bootstrap 200 --split test --out audit.csv
  relink audit --embeddings my_set --levels study --directions image_to_report \\
      --monte-carlo 200 --pools-clip --out audit.json

The table has one row per (direction, negatives, level, N, K, estimator, metric)
with columns model, cohort, direction, negatives, level, N, K, estimator, metric,
value, ci_low, ci_high, chance, lift, n_queries, coverage; its format follows the
extension of --out (.csv, .parquet, .json) and it carries provenance.
"""


INTERRUPTED = "interrupted; no table was written"


def register(sub):
    from ..retrieval.spec import AuditSpec
    from ..options import add_spec_arguments

    p = sub.add_parser(
        "audit", help="exact Recall@K re-linkage audit of an embedding set",
        description="Expected Recall@K of matching each image to its own report (and back) over random "
                    "candidate pools of size N, computed exactly from one blocked pass of score products; "
                    "optional pathology-matched hard negatives, patient-level hits and patient-clustered "
                    "bootstrap intervals.",
        formatter_class=HelpFormatter, epilog=EXAMPLES)
    p.add_argument("--embeddings", required=True, metavar="DIR", help="EmbeddingSet folder (rows.parquet, image.npy, text.npy)")
    p.add_argument("--out", required=True, metavar="FILE", help="output table: .csv, .parquet or .json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out that is not an audit table")
    p.add_argument("--hard-negatives", action="store_true",
                   help="also audit pathology-matched and positive-set-matched distractors")
    p.add_argument("--split", default=None, help="audit only the rows of this split (default: all rows)")
    p.add_argument("--model-name", default=None, help="model column (default: the set's meta.json model spec)")
    p.add_argument("--cohort-name", default=None, help="cohort column (default: the rows' cohort names)")
    add_spec_arguments(p, AuditSpec)
    p.set_defaults(func=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from .. import embeddings, provenance
    from ..io import claim_output, writing
    from ..options import spec_from_args
    from ..retrieval.audit import audit
    from ..retrieval.spec import AuditSpec
    from ..tables import check_format, write_table

    out = Path(args.out)
    check_format(out)
    negatives = ("random",) + (("pathology_matched", "positive_set_matched") if args.hard_negatives else ())
    spec = spec_from_args(AuditSpec, args, negatives=negatives)
    claim_output(out, "file", owner="audit", overwrite=args.overwrite)
    es = embeddings.load(args.embeddings)
    if args.split is not None:
        splits = sorted(map(str, es.rows["split"].unique()))
        if args.split not in splits:
            raise RelinkError(f"--split {args.split!r}: {args.embeddings} has no such rows (splits: {', '.join(splits)})")
        es = es.split(args.split)
    frame = audit(es, spec, model=args.model_name, cohort=args.cohort_name, progress=True)
    settings = frame.attrs.get("audit", {})
    if settings.get("pools_dropped"):
        dropped = ", ".join(f"{int(n):,}" for n in settings["pools_dropped"])
        print(f"note: pools larger than the {len(es):,} candidates were left out (--pools-clip): {dropped}", file=sys.stderr)
    if args.hard_negatives and settings.get("unlabelled_rows"):
        print(f"note: {settings['unlabelled_rows']:,} row(s) carry no label; they are audited with random pools only "
              "(never covered by a matched pool)", file=sys.stderr)
    prov = provenance.stamp(command="audit", embeddings=Path(args.embeddings).name, embedding_meta=dict(es.meta),
                            split=args.split, settings=frame.attrs.get("audit", {}))
    with writing(out):
        write_table(frame, out, prov)
    best = frame[(frame.metric == "recall") & (frame.estimator == "exact") & (frame.level == "study")
                 & (frame.negatives == "random")]
    if len(best):
        row = best[best.K == best.K.min()].sort_values("N").iloc[-1]  # the hardest pool at the strictest K
        print(f"{len(frame)} rows -> {out}; {row.direction} Recall@{row.K} at N={row.N}: "
              f"{row.value:.4g} ({row.lift:.3g}x chance)")
    else:
        print(f"{len(frame)} rows -> {out}")
    return 0
