"""`relink neighbors`: top-k reports per image (or images per report) with FAISS."""

from __future__ import annotations

from ..errors import RelinkError
from ..options import positive_int
from . import HelpFormatter

EXAMPLES = """\
examples:
  relink neighbors --embeddings runs/emb/ladder-3 --k 10 --out neighbors.parquet
  relink neighbors --embeddings my_set --k 5 --direction report_to_image --split test --out nn.csv

Columns: query_pair_id, rank (1 = best), candidate_pair_id, score (cosine),
is_true (the candidate is the query's own pair), same_patient. No report text.
"""


def register(sub):
    p = sub.add_parser(
        "neighbors", help="list the top-k candidates of every query (FAISS)",
        description="Exact top-k search (FAISS IndexFlatIP on L2-normalised embeddings) for inspecting "
                    "which reports an image is linked to, at any scale.",
        formatter_class=HelpFormatter, epilog=EXAMPLES)
    p.add_argument("--embeddings", required=True, metavar="DIR", help="EmbeddingSet folder")
    p.add_argument("--out", required=True, metavar="FILE", help="output table: .csv, .parquet or .json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out that is not a neighbors table")
    p.add_argument("--k", type=positive_int, default=10, help="candidates listed per query")
    p.add_argument("--direction", default="image_to_report", choices=("image_to_report", "report_to_image"))
    p.add_argument("--split", default=None, help="only the rows of this split (default: all rows)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from .. import embeddings, provenance
    from ..io import claim_output, writing
    from ..retrieval.neighbors import neighbor_table, top_k
    from ..tables import check_format, write_table

    out = Path(args.out)
    check_format(out)
    claim_output(out, "file", owner="neighbors", overwrite=args.overwrite)
    es = embeddings.load(args.embeddings)
    if args.split is not None:
        splits = sorted(map(str, es.rows["split"].unique()))
        if args.split not in splits:
            raise RelinkError(f"--split {args.split!r}: {args.embeddings} has no such rows (splits: {', '.join(splits)})")
        es = es.split(args.split)
    base = Path(args.embeddings)
    image, text = es.unit("image"), es.unit("text")
    queries, candidates = (image, text) if args.direction == "image_to_report" else (text, image)
    scores, found = top_k(queries, candidates, args.k, progress=True)
    frame = neighbor_table(es.rows["pair_id"].to_numpy(), es.rows["patient_id"].to_numpy(), scores, found)
    prov = provenance.stamp(command="neighbors", embeddings=base.name, embedding_meta=dict(es.meta),
                            split=args.split, k=int(found.shape[1]), direction=args.direction)
    with writing(out):
        write_table(frame, out, prov)
    hit = frame.groupby("query_pair_id", sort=False)["is_true"].any().mean()
    print(f"{len(frame)} rows -> {out}; own pair within the top {found.shape[1]} for {hit:.1%} of queries")
    return 0
