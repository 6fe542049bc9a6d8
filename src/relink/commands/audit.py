"""`relink audit`: the re-linkage audit of an EmbeddingSet, written as a tidy metric table."""

from __future__ import annotations

import sys

from ..errors import RelinkError
from . import JOIN_TIMEOUT, HelpFormatter, add_timeout

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

The embeddings are read in blocks: --memory bounds what the audit adds to the
interpreter with torch (libraries, row table, per-pair counts, the blocks it
streams), whatever the size of the set.
Finished blocks are kept in OUT.work beside --out until the table is written,
so an interrupted audit resumes where it stopped. With --distributed, each
process of a torchrun launch takes a share of the query rows (gloo on CPUs,
nccl on GPUs). Neither changes a number of the table. The launch's variables
are checked first, and a process waits at most --timeout seconds for the
others to join before it stops with one line naming those that did not.

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
                   help="memory the audit may add to the interpreter with torch (the libraries it loads, the row "
                        "table, the per-pair counts, the blocks streamed), e.g. 256MB or 4G (K, M, G suffixes; "
                        "default: half of the memory available, shared by the processes of a machine)")
    p.add_argument("--distributed", action="store_true",
                   help="run as one process of a torchrun launch (`torchrun --nproc_per_node P -m relink audit "
                        "--distributed ...`): the query rows are split across processes; gloo on CPU, nccl on GPU")
    p.add_argument("--confident-curve", default=None, metavar="FILE",
                   help="also write the threshold attacker's precision-recall curve (.csv, .parquet, .json; needs "
                        "--confident)")
    add_timeout(p)
    add_spec_arguments(p, AuditSpec)
    p.set_defaults(func=run)


def say(msg: str) -> None:
    print(f"relink audit: {msg}", file=sys.stderr, flush=True)


def _budget(text, world: int) -> int:
    import os

    from ..retrieval.memory import default_memory, parse_memory

    if text is not None:
        return parse_memory(text)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))  # processes sharing this machine's memory
    return default_memory() // max(1, local)


def _load(args, rank: int):
    """The set, validated once with explicit block reads (a memory-mapped set is never read whole); rank 0
    checks the values, the others only the shapes."""
    from .. import embeddings
    from ..labels import CHEXPERT_LABELS
    from ..retrieval.stream import validate

    es = embeddings.load(args.embeddings, check_values=False)
    if rank == 0:
        validate(es)
    # validated whole; the audit holds only the columns it reads (ids and report-level fields are ~80% of
    # the table's memory, inside --memory)
    keep = ["patient_id", "cohort", "split"] + (list(CHEXPERT_LABELS) if args.hard_negatives else [])
    es.rows = es.rows.loc[:, [c for c in keep if c in es.rows.columns]]
    rows = None
    if args.split is not None:
        rows = es.split_mask(args.split)
    return es, rows


def run(args) -> int:
    from pathlib import Path

    from ..retrieval.memory import resident, return_freed_memory

    import torch  # noqa: F401 - the budget counts from the interpreter with torch (retrieval.memory)

    start = resident()
    return_freed_memory()  # so that blocks the audit frees leave its resident set
    out = Path(args.out)
    comm = None
    if args.distributed:
        from ..embed.distributed import TorchComm, init_process_group

        # The rank's GPU becomes its current device; the spec keeps the device as given (the table's
        # provenance is then the one-process table's).
        init_process_group(getattr(args, "device", None) or "auto", timeout=getattr(args, "timeout", JOIN_TIMEOUT))
        comm = TorchComm()
    rank = comm.rank if comm is not None else 0
    try:
        counted = _count(args, out, comm, rank, start)
    except RelinkError:
        if rank != 0:  # every rank holds the same error; one line is enough
            raise SystemExit(2) from None
        raise
    finally:
        if comm is not None:
            from ..embed.distributed import destroy_process_group

            destroy_process_group()
    return _write(args, out, *counted) if rank == 0 else 0


def _count(args, out, comm, rank: int, start: int | None):
    """Options, input and the passes (every rank); returns what rank 0 summarises."""
    from pathlib import Path

    from ..guard import claim
    from ..options import spec_from_args
    from ..retrieval.audit import audit_queries
    from ..embed.distributed import OtherRankFailed, sync
    from ..retrieval.spec import AuditSpec
    from ..retrieval.work import AuditWork, work_path
    from ..tables import table_output

    failure = None
    try:
        target = table_output("--out", out, work=work_path(out))
        negatives = ("random",) + (("pathology_matched", "positive_set_matched") if args.hard_negatives else ())
        spec = spec_from_args(AuditSpec, args, negatives=negatives)
        targets = [target]
        if args.confident_curve is not None:
            if not spec.confident:
                raise RelinkError("--confident-curve needs --confident (the precision targets)")
            targets.append(table_output("--confident-curve", Path(args.confident_curve)))
        memory = _budget(args.memory, comm.world_size if comm is not None else 1)
        if rank == 0:  # first, before any expensive work
            claim("audit", targets, inputs=[("--embeddings", args.embeddings)], overwrite=args.overwrite)
        es, rows = _load(args, rank)
    except Exception as exc:  # noqa: BLE001 - every rank must learn of it
        failure = exc
    sync(comm, failure)
    work = work_path(out)
    stats: dict = {}
    try:
        qv = audit_queries(es, spec, progress=rank == 0, rows=rows, memory=memory, held_from=start, comm=comm,
                           work=work, stats=stats)
    except RelinkError as exc:  # bad input: no work folder left behind (an interrupt keeps it)
        if rank == 0 and stats.get("work_state") in ("new", "stale") and not isinstance(exc, OtherRankFailed):
            AuditWork(work, {}).remove()
        raise
    if rank == 0 and stats.get("work_state") == "stale":
        say(f"{work} belonged to another audit (other rows, options or embeddings); started afresh")
    if rank == 0 and stats.get("finished_before"):
        say(f"resumed: {stats['finished_before']} finished block(s) of query rows taken from {work}")
    return qv, es, rows, work


def _write(args, out, qv, es, rows, work) -> int:
    """Summarise, write the table, remove the work folder."""
    from pathlib import Path

    from .. import provenance
    from ..embeddings import EmbeddingSet, public_meta, public_model_name
    from ..io import writing
    from ..retrieval.audit import summarise
    from ..retrieval.work import AuditWork
    from ..tables import write_table

    model = args.model_name if args.model_name is not None else public_model_name(es.meta.get("model"),
                                                                                  es.meta.get("weights_fingerprint"))
    frame_rows = es.rows if rows is None else es.rows[rows]
    # the one cohort-name rule, applied to the rows audited
    cohort = args.cohort_name if args.cohort_name is not None else EmbeddingSet(frame_rows, None, None).cohort_name
    frame = summarise(qv, model=model, cohort=cohort)
    settings = frame.attrs.get("audit", {})
    n = settings.get("n_pairs", len(frame_rows))
    if settings.get("pools_dropped"):
        dropped = ", ".join(f"{int(v):,}" for v in settings["pools_dropped"])
        print(f"note: pools larger than the {n:,} candidates were left out (--pools-clip): {dropped}", file=sys.stderr)
    if args.hard_negatives and settings.get("unlabelled_rows"):
        print(f"note: {settings['unlabelled_rows']:,} row(s) carry no label; they are audited with random pools only "
              "(never covered by a matched pool)", file=sys.stderr)
    prov = provenance.stamp(command="audit", embeddings=Path(args.embeddings).name,
                            embedding_meta=public_meta(es.meta), split=args.split, settings=settings)
    if args.confident_curve is not None:
        from ..retrieval.summary import confident_curve

        curve = Path(args.confident_curve)
        with writing(curve):
            write_table(confident_curve(qv, rows), curve, {**prov, "table": "confident_curve"})
    with writing(out):
        write_table(frame, out, prov)
    AuditWork(work, {}).remove()
    best = frame[(frame.metric == "recall") & (frame.estimator == "exact") & (frame.level == "study")
                 & (frame.negatives == "random")]
    if len(best):
        row = best[best.K == best.K.min()].sort_values("N").iloc[-1]  # the hardest pool at the strictest K
        print(f"{len(frame)} rows -> {out}; {row.direction} Recall@{row.K} at N={row.N}: "
              f"{row.value:.4g} ({row.lift:.3g}x chance)")
    else:
        print(f"{len(frame)} rows -> {out}")
    return 0
