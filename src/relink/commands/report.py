"""`relink report`: the custodian's re-linkage report, one HTML page plus JSON, with a verdict and an exit code."""

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
  - before/after for --mitigated outputs of `relink mitigate`, or advice;
  - with several --embeddings (the same pairs embedded by each model an
    attacker could use, the custodian's first), a row per model and the
    worst verdict over the panel;
  - confident re-links (images re-linked at precision >= 0.9) and their
    rule line, when the audit computes them.

Every figure comes from one pass over the scores per model (the risk against
N from a second, random pools only). Both outputs pass the leak scanner
(identifiers of the audited rows; report text with --cohort) before they are
written; a hit refuses the write.

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
  relink report --embeddings emb/custodian emb/public-a emb/public-b --split test \\
      --out report.html                     # an attacker panel: the verdict is the worst over the three models
"""

INTERRUPTED = "interrupted; no report was written"


def register(sub) -> None:
    from ..options import add_spec_arguments
    from ..report.threat import ReportSpec

    p = sub.add_parser("report", help="the custodian's re-linkage report: HTML + JSON, verdict, exit code",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--embeddings", required=True, nargs="+", action="extend", metavar="DIR",
                   help="EmbeddingSet folder of the model and rows to audit; several folders form an attacker panel: "
                        "the custodian's model first, then each public model an attacker could use, every set "
                        "holding the same pairs (the verdict is the worst over the panel)")
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


def run(args) -> int:
    from ..api.report import outputs, report
    from ..guard import claim
    from ..options import spec_from_args
    from ..report.threat import ReportSpec

    spec = spec_from_args(ReportSpec, args)
    # the output guard first, before any work: every file written, apart from every input
    claim("report", outputs(args.out, args.json, args.audit),
          inputs=[("--embeddings", args.embeddings), ("--cohort", args.cohort), ("--mitigated", args.mitigated)],
          overwrite=args.overwrite)
    result = report(args.embeddings, spec, split=args.split, cohort=args.cohort, mitigated=args.mitigated,
                    progress=True)
    result.write(args.out, args.json, args.audit, overwrite=args.overwrite)

    shown = ", ".join([args.out] + ([args.json] if args.json else []))
    print(f"relink report: verdict {result.verdict.upper()}. {result.headline} -> {shown}")
    if result.document["panel"]["sentence"]:
        print(f"relink report: {result.document['panel']['sentence']}")
    if result.reaches(spec.fail_on):
        print(f"relink report: the verdict {result.verdict} reaches --fail-on {spec.fail_on}: "
              f"exit status {FAIL_STATUS}")
        return FAIL_STATUS
    return 0
