"""`relink report`: the custodian's re-linkage report, one HTML page plus JSON, with a verdict and an exit code.

Exit status: 0 when written; 2 on bad input (one line, nothing written);
3 when ``--fail-on LEVEL`` is given and the verdict reaches LEVEL (the
report is written first, so a release pipeline can gate on it and keep it).
"""

from __future__ import annotations

from . import HelpFormatter

FAIL_STATUS = 3  # distinct from 2 (bad input) and 1 (a bug), so a pipeline can tell them apart

DESCRIPTION = """\
Audit how well the model re-links released images to their own reports by
cosine similarity, for a threat model the custodian declares (the attacker's
pool of N candidate reports, the M images released), and write one
standalone HTML page (no network request; prints cleanly) and, with --json,
the same numbers under the versioned schema relink-report/2:

  - the threat model as declared, with the model and cohort fingerprints;
  - expected images re-linked at rank 1 and within the top K = Recall@K(N) x M,
    per study and per patient, with patient-clustered intervals, lift over
    chance, both directions, and a sentence generated from them;
  - the same against the attacker's pool N (a figure), to help choose N;
  - a verdict (low / inconclusive / elevated / high) from the rule printed
    with it: low only when the upper bounds are below the elevated
    thresholds, inconclusive with the audit size that would decide it;
  - a one-line decision and a decision record (release name, report id,
    UTC time, version and commit, assumptions, sign-off fields);
  - pathology-matched pools beside random pools on the same queries;
  - where the risk concentrates (label groups, views with --cohort, studies
    per patient, a rank histogram), aggregates only, no cell below --min-cell;
  - before/after for --mitigated outputs of `relink mitigate`, or advice.

Every figure comes from one pass over the scores (the risk against N from a
second, random pools only). Both outputs pass the leak
scanner (identifiers of the audited rows; report text with --cohort) before
they are written; a hit refuses the write.

Exit status: 0 written; 2 bad input (nothing written); 3 the verdict reached
--fail-on (the report is still written; inconclusive counts as elevated).
"""

EPILOG = """\
examples:
  relink report --embeddings emb/ladder-3 --split test --out report.html --json report.json
  relink report --embeddings emb/internal --split test --attacker-pool 1000,10000 \\
      --released 43793 --cohort cohort/cohort.parquet --out report.html
  relink report --embeddings emb/internal --mitigated dp/eps0.34 --mitigated dp/eps1 \\
      --out report.html --fail-on high      # exits 3 when the verdict is high
"""

INTERRUPTED = "interrupted; no report was written"


def register(sub) -> None:
    from ..options import add_spec_arguments
    from ..report.threat import ReportSpec

    p = sub.add_parser("report", help="the custodian's re-linkage report: HTML + JSON, verdict, exit code",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--embeddings", required=True, metavar="DIR",
                   help="EmbeddingSet folder of the model and rows to audit")
    p.add_argument("--out", required=True, metavar="FILE", help="the HTML page (.html)")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as relink-report/2 JSON (.json)")
    p.add_argument("--audit", metavar="FILE", help="also write the tidy metric table the report was built from "
                                                  "(recall and MRR rows; .csv, .parquet or .json)")
    p.add_argument("--split", default=None,
                   help="report on the rows of this split only; 'all' for every row together (without --split, a "
                        "set that mixes train rows with held-out rows is refused)")
    p.add_argument("--cohort", metavar="FILE",
                   help="cohort manifest (or folder) of the rows: adds the breakdown by view and scans the outputs "
                        "for its report text")
    p.add_argument("--mitigated", action="append", default=[], metavar="DIR",
                   help="a `relink mitigate` output folder to compare (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that are not earlier relink reports")
    add_spec_arguments(p, ReportSpec)
    p.set_defaults(func=run)


def _outputs(args):
    from pathlib import Path

    from ..errors import RelinkError
    from ..guard import Output, claim
    from ..tables import check_format, table_output

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise RelinkError(f"--out {out}: the page must be an .html file")
    paths = [(out, "--out")]
    if args.json:
        if Path(args.json).suffix.lower() != ".json":
            raise RelinkError(f"--json {args.json}: must be a .json file")
        paths.append((Path(args.json), "--json"))
    if args.audit:
        check_format(Path(args.audit))
        paths.append((Path(args.audit), "--audit"))
    # the output guard: every file written (a CSV table's side file too), apart from every input
    claim("report", [table_output(flag, path) if flag == "--audit" else Output(flag, path) for path, flag in paths],
          inputs=[("--embeddings", args.embeddings), ("--cohort", args.cohort), ("--mitigated", args.mitigated)],
          overwrite=args.overwrite)
    return paths


def _views(cohort_path: str, rows):
    """The manifest's view per audited row (None when it has no view column), and its reports for the scan."""
    from ..cohort import read_cohort
    from ..errors import RelinkError

    frame = read_cohort(cohort_path, validate_rows=False).frame
    if "pair_id" not in frame:
        raise RelinkError(f"--cohort {cohort_path}: the manifest has no pair_id column")
    ids = frame["pair_id"].astype(str)
    if not rows["pair_id"].astype(str).isin(set(ids)).any():
        raise RelinkError(f"--cohort {cohort_path}: shares no pair_id with --embeddings (another cohort?)")
    reports = frame["report"].dropna().astype(str).tolist() if "report" in frame else []
    if "view" not in frame:
        return None, reports
    views = frame.assign(pair_id=ids).drop_duplicates("pair_id").set_index("pair_id")["view"]
    return views.reindex(rows["pair_id"].astype(str)).reset_index(drop=True), reports


def _audited_rows(es, split: str | None):
    """The rows to audit and the split to apply to mitigated sets (None: every row).

    Without ``--split``, training rows are never mixed silently into a held-out audit: a set holding ``train``
    rows beside others is refused unless ``--split all`` says so.
    """
    from ..errors import RelinkError

    if split == "all":
        return es, None
    if split is not None:
        return es.subset(es.split_mask(split)), split
    splits = sorted(map(str, es.rows["split"].dropna().unique())) if "split" in es.rows else []
    if "train" in splits and len(splits) > 1:
        raise RelinkError(f"--split: the embedding set mixes train rows with held-out rows (splits: "
                          f"{', '.join(splits)}); give --split NAME to audit one split, or --split all to audit every "
                          "row together")
    return es, None


def run(args) -> int:
    import threading
    from pathlib import Path

    from .. import embeddings, provenance
    from ..options import spec_from_args
    from ..report import build, mitigation, render, schema
    from ..report.threat import ReportSpec, check_against, reached
    from ..tables import write_table

    spec = spec_from_args(ReportSpec, args)
    _outputs(args)
    es = loaded = embeddings.load(args.embeddings)
    es, split = _audited_rows(es, args.split)
    check_against(spec, len(es))
    views, reports = _views(args.cohort, es.rows) if args.cohort else (None, [])
    mitigated = [mitigation.resolve(p, es, split) for p in args.mitigated]

    audited_splits = sorted(map(str, es.rows["split"].dropna().unique())) if "split" in es.rows else []
    source = {"embeddings": Path(args.embeddings).name, "split": ", ".join(audited_splits) or None}
    warm = threading.Thread(target=render.warm_up, daemon=True)  # plotting stack loads beside the audit
    warm.start()
    record, frame = build.build(es, spec, source, views=views, mitigated=mitigated, progress=True)
    warm.join()
    prov = provenance.stamp(command="report", embeddings=source["embeddings"], split=args.split,
                            mitigated=[m.name for m in mitigated],
                            cohort_manifest=Path(args.cohort).name if args.cohort else None)
    doc = schema.document(record, prov)
    html, json_text = render.render(doc), schema.json_text(doc)
    out, json_path = Path(args.out), Path(args.json) if args.json else None
    # both texts are scanned, the JSON even when it is not asked for: the page is drawn from it
    ids = {col: loaded.rows[col].astype(str).tolist() for col in ("pair_id", "patient_id", "study_id")}
    schema.leak_check({out.name: html, json_path.name if json_path else "report.json": json_text}, ids, reports)
    outputs = {out: (html, "--out")}
    if json_path:
        outputs[json_path] = (json_text, "--json")
    schema.write_outputs(outputs)
    if args.audit:
        write_table(frame, args.audit, prov)

    level = record["verdict"]["level"]
    written = ", ".join(str(p) for p in outputs)
    print(f"relink report: verdict {level.upper()}. {record['headline']['sentence']} -> {written}")
    if reached(level, spec.fail_on):
        print(f"relink report: the verdict {level} reaches --fail-on {spec.fail_on}: exit status {FAIL_STATUS}")
        return FAIL_STATUS
    return 0
