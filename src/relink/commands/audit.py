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


def _split_list(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def register(sub):
    p = sub.add_parser(
        "audit", help="exact Recall@K re-linkage audit of an embedding set",
        description="Expected Recall@K of matching each image to its own report (and back) over random "
                    "candidate pools of size N, computed exactly from one blocked pass of score products; "
                    "optional pathology-matched hard negatives, patient-level hits and patient-clustered "
                    "bootstrap intervals.",
        formatter_class=HelpFormatter, epilog=EXAMPLES)
    p.add_argument("--embeddings", required=True, metavar="DIR", help="EmbeddingSet folder (rows.parquet, image.npy, text.npy)")
    p.add_argument("--out", required=True, metavar="FILE", help="output table: .csv, .parquet or .json")
    p.add_argument("--pools", default="10,100,1000,10000,full", help="pool sizes N (truth + N-1 distractors) and/or 'full'")
    p.add_argument("--k", default="1,5,10", help="K values for Recall@K")
    p.add_argument("--hard-negatives", action="store_true",
                   help="also audit pathology-matched and positive-set-matched distractors")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="patient bootstrap replicates (0: no intervals)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and Monte Carlo draws")
    p.add_argument("--directions", default="both", help="image_to_report, report_to_image, or both")
    p.add_argument("--levels", default="study,patient", help="study and/or patient")
    p.add_argument("--split", default=None, help="audit only the rows of this split (default: all rows)")
    p.add_argument("--model-name", default=None, help="model column (default: the set's meta.json model spec)")
    p.add_argument("--cohort-name", default=None, help="cohort column (default: the rows' cohort names)")
    p.add_argument("--monte-carlo", type=int, default=0, metavar="P", help="add Monte Carlo rows with P pools per query")
    p.add_argument("--pools-clip", action="store_true", help="drop pools larger than the candidate set instead of failing")
    p.add_argument("--ties", default="random", choices=("random", "pessimistic", "optimistic"),
                   help="how candidates with an embedding identical to the truth's are ranked against it")
    p.add_argument("--tie-tol", type=float, default=1e-6,
                   help="a candidate outranks the truth only when it scores more than this above it")
    p.add_argument("--uncertain", default="own", choices=("own", "negative", "positive"),
                   help="hard negatives: how an uncertain (-1) label is matched")
    p.add_argument("--missing", default="negative", choices=("negative", "own"),
                   help="hard negatives: how a missing label is matched")
    p.add_argument("--ci", type=float, default=0.95, help="interval level")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from .. import embeddings, provenance
    from ..retrieval.audit import audit
    from ..tables import check_format, write_table

    out = Path(args.out)
    check_format(out)
    directions = _split_list(args.directions)
    if directions == ["both"]:
        directions = ["image_to_report", "report_to_image"]
    negatives = ["random"] + (["pathology_matched", "positive_set_matched"] if args.hard_negatives else [])
    es = embeddings.load(args.embeddings)
    if args.split is not None:
        splits = sorted(map(str, es.rows["split"].unique()))
        if args.split not in splits:
            raise RelinkError(f"--split {args.split!r}: {args.embeddings} has no such rows (splits: {', '.join(splits)})")
        es = es.split(args.split)
    frame = audit(
        es, pools=_split_list(args.pools), ks=_split_list(args.k), directions=directions,
        levels=_split_list(args.levels), negatives=negatives, n_boot=args.bootstrap, random_state=args.seed,
        model=args.model_name or "", cohort=args.cohort_name, monte_carlo_pools=args.monte_carlo,
        pools_clip=args.pools_clip, ties=args.ties, tie_tol=args.tie_tol, uncertain=args.uncertain,
        missing=args.missing, ci=args.ci, device=args.device, progress=True,
    )
    meta = {k: v for k, v in es.meta.items()}
    prov = provenance.stamp(command="audit", embeddings=Path(args.embeddings).name, embedding_meta=meta,
                            split=args.split, settings=frame.attrs.get("audit", {}))
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
