"""`relink audit`: the re-linkage audit of an EmbeddingSet, written as a tidy metric table."""

from __future__ import annotations

import sys

from . import HelpFormatter, add_timeout

EXAMPLES = """\
examples:
  relink audit --embeddings runs/emb/ladder-3 --out results/audit.parquet
  relink audit --embeddings runs/emb/ladder-3 --pools 10,100,full --k 1,5 \\
      --hard-negatives --bootstrap 200 --split test --out audit.csv
  relink audit --embeddings my_set --levels study --directions image_to_report \\
      --monte-carlo 200 --pools-clip --out audit.json
  relink audit --embeddings archive --memory 2G --out audit.parquet
  relink audit --embeddings runs/emb/ladder-3 --confident 0.9,0.99 --confident-curve pr.csv --out audit.csv
  torchrun --nproc_per_node 4 -m relink audit --distributed --embeddings archive --out audit.parquet

The table has one row per (direction, negatives, level, N, K, estimator, metric)
with columns model, cohort, direction, negatives, level, N, K, estimator, metric,
value, ci_low, ci_high, chance, lift, n_queries, coverage; its format follows the
extension of --out (.csv, .parquet, .json) and it carries provenance.

--confident P,... adds the threshold attacker (random negatives): rows with metric
relinked_best (the threshold that re-links the most images at precision >= P) and
relinked_calibrated (a threshold set on --confident-calibration S labelled pairs held
apart), K = 0 and a precision_target column; --confident-curve FILE writes its
precision-recall curve (direction, level, N, threshold, expected_correct,
expected_links, precision, recall, links_exact).

The embeddings are read in blocks within --memory, whatever the size of the
set. Finished blocks are kept in OUT.work beside --out until the table is
written, so an interrupted audit resumes where it stopped. With --distributed,
each process of a torchrun launch takes a share of the query rows; the
launch's variables are checked first. Neither changes a number of the table.

--out, its side file (a .csv table's .provenance.json) and OUT.work must not be
or lie inside --embeddings, even with --overwrite; a symbolic link there is
never written through.
"""

INTERRUPTED = ("interrupted; finished blocks are kept in OUT.work (beside --out); "
               "run the same command again to resume")


def register(sub):
    from ..options import add_spec_arguments
    from ..retrieval.spec import AuditSpec

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
    p.add_argument("--memory", default=None, metavar="SIZE",
                   help="memory the audit's own data may take above the process once its libraries are imported "
                        "(the libraries are not counted; the row table, the per-pair counts, the blocks streamed and "
                        "the summary after the pass are), e.g. 256MB or 4G (K, M, G suffixes; default: half of the "
                        "memory available, shared by the processes of a machine)")
    p.add_argument("--distributed", action="store_true",
                   help="run as one process of a torchrun launch (`torchrun --nproc_per_node P -m relink audit "
                        "--distributed ...`): the query rows are split across processes; gloo on CPU, nccl on GPU")
    p.add_argument("--confident-curve", default=None, metavar="FILE",
                   help="also write the threshold attacker's precision-recall curve (.csv, .parquet, .json; needs "
                        "--confident)")
    add_timeout(p)
    add_spec_arguments(p, AuditSpec)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..api.audit import AuditFiles, audit_to_files
    from ..options import spec_args
    from ..retrieval.spec import AuditSpec

    negatives = ("random",) + (("pathology_matched", "positive_set_matched") if args.hard_negatives else ())
    files = AuditFiles(Path(args.out), None if args.confident_curve is None else Path(args.confident_curve),
                       args.overwrite)
    result = audit_to_files(args.embeddings, {**spec_args(AuditSpec, args), "negatives": negatives}, files,
                            memory=args.memory, distributed=args.distributed, timeout=args.timeout, split=args.split,
                            model=args.model_name, cohort=args.cohort_name)
    if result is None:  # not the first process of a launch
        return 0
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    frame = result.table
    best = frame[(frame.metric == "recall") & (frame.estimator == "exact") & (frame.level == "study")
                 & (frame.negatives == "random")]
    if len(best):
        row = best[best.K == best.K.min()].sort_values("N").iloc[-1]  # the hardest pool at the strictest K
        print(f"{len(frame)} rows -> {args.out}; {row.direction} Recall@{row.K} at N={row.N}: "
              f"{row.value:.4g} ({row.lift:.3g}x chance)")
    else:
        print(f"{len(frame)} rows -> {args.out}")
    return 0
