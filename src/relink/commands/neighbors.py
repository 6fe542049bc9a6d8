"""`relink neighbors`: top-k reports per image (or images per report) with FAISS."""

from __future__ import annotations

import sys

from ..options import argtype
from . import HelpFormatter

LOW_RECALL = 0.9  # below this share of the exact top-k, an approximate listing is flagged

EXAMPLES = """\
examples:
  relink neighbors --embeddings runs/emb/ladder-3 --k 10 --out neighbors.parquet
  relink neighbors --embeddings my_set --k 5 --direction report_to_image --split test --out nn.csv
  relink neighbors --embeddings archive --k 10 --index ivf,pq --out nn.parquet

Columns: query_pair_id, rank (1 = best), candidate_pair_id, score (cosine),
is_true (the candidate is the query's own pair), same_patient. No report text.

--index flat (the default) is exact. --index ivf,pq (FAISS IndexIVFPQ, for
candidate sets too large for an exact index) is approximate: its recall@k
against the exact search on a seeded sample of queries is printed and kept
in the table's provenance. The audit (`relink audit`) is always exact.
"""


def register(sub):
    p = sub.add_parser(
        "neighbors", help="list the top-k candidates of every query (FAISS)",
        description="Top-k search (FAISS, inner product of L2-normalised embeddings) for inspecting which "
                    "reports an image is linked to, at any scale.",
        formatter_class=HelpFormatter, epilog=EXAMPLES)
    p.add_argument("--embeddings", required=True, metavar="DIR", help="EmbeddingSet folder")
    p.add_argument("--out", required=True, metavar="FILE", help="output table: .csv, .parquet or .json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out that is not a neighbors table")
    p.add_argument("--k", type=argtype(int, 1, 10_000), default=10, help="candidates listed per query")
    p.add_argument("--direction", default="image_to_report", choices=("image_to_report", "report_to_image"))
    p.add_argument("--split", default=None, help="only the rows of this split (default: all rows)")
    p.add_argument("--index", default="flat", choices=("flat", "ivf,pq"),
                   help="flat: exact; ivf,pq: approximate (FAISS IndexIVFPQ, parameters from the set's size)")
    p.add_argument("--nprobe", type=argtype(int, 1, 1 << 20), default=None,
                   help="ivf,pq: lists visited per query (default: a tenth-ish of them, see the module docs)")
    p.add_argument("--seed", type=argtype(int, 0, 2**31 - 1), default=0,
                   help="ivf,pq: seed of the training sample and recall check")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from .. import embeddings, provenance
    from ..embeddings import RowSource
    from ..guard import claim
    from ..io import writing
    from ..retrieval.neighbors import build_index, neighbor_table, recall_vs_flat, search
    from ..errors import RelinkError
    from ..tables import table_output, write_table

    out = Path(args.out)
    claim("neighbors", [table_output("--out", out)], inputs=[("--embeddings", args.embeddings)],
          overwrite=args.overwrite)
    es = embeddings.load(args.embeddings)  # validated in blocks: the set is never read whole
    rows = None
    if args.split is not None:
        rows = np.flatnonzero(es.split_mask(args.split))
    frame_rows = es.rows if rows is None else es.rows.iloc[rows]
    if args.k > len(frame_rows):  # a request larger than the data is refused, as the audit refuses a pool
        raise RelinkError(f"--k {args.k} is larger than the {len(frame_rows):,} candidates"
                          + (f" of --split {args.split}" if args.split is not None else "") + "; give a smaller --k")
    image, text = RowSource(es.image, rows=rows), RowSource(es.text, rows=rows)
    queries, candidates = (image, text) if args.direction == "image_to_report" else (text, image)
    index, params = build_index(candidates, args.index, seed=args.seed, nprobe=args.nprobe)
    scores, found = search(index, queries, args.k, progress=True)
    if args.index != "flat":
        params.update(recall_vs_flat(index, queries, candidates, args.k, seed=args.seed))
    frame = neighbor_table(frame_rows["pair_id"].to_numpy(), frame_rows["patient_id"].to_numpy(), scores, found)
    prov = provenance.stamp(command="neighbors", embeddings=Path(args.embeddings).name, embedding_meta=dict(es.meta),
                            split=args.split, k=int(found.shape[1]), direction=args.direction, index=params)
    with writing(out):
        write_table(frame, out, prov)
    hit = frame.groupby("query_pair_id", sort=False)["is_true"].any().reindex(
        frame_rows["pair_id"].to_numpy(), fill_value=False).mean()
    note = ""
    if args.index != "flat":
        note = (f"; approximate index: recall@{params['k']} vs exact {params['recall_at_k_vs_flat']:.3f} "
                f"on {params['sample_queries']} sampled queries")
    print(f"{len(frame)} rows -> {out}; own pair within the top {found.shape[1]} for {hit:.1%} of queries{note}")
    if args.index != "flat" and params["recall_at_k_vs_flat"] < LOW_RECALL:
        # product quantisation of a small or low-dimensional set loses most neighbours: say so plainly
        print(f"warning: the approximate index found {params['recall_at_k_vs_flat']:.0%} of the exact top "
              f"{params['k']}; raise --nprobe, or use --index flat (exact) for a set of this size", file=sys.stderr)
    return 0
