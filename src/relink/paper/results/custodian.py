"""Result ``custodian``: the custodian's report (``relink report``) for the profile's strongest model.

``report.html`` (the standalone page) and ``report.json`` (the same numbers,
schema ``relink-report/2``) for the internal evaluation split: the attacker
holds the profile's headline pool of reports (10,000, or the largest finite
pool the split fills), the custodian releases every image of the split, and
the headline DP run of result ``dp`` is the mitigation compared before/after.
"""

from __future__ import annotations

from pathlib import Path

from ...provenance import stamp
from ..stages import Context, cohorts
from . import Result
from .common import headline_sets
from .dp import HEADLINE


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    from ...cohort import read_cohort
    from ...report import build as report_build
    from ...report import mitigation, render, schema
    from ...report.threat import ReportSpec

    p = ctx.profile
    rung, _, sets = headline_sets(ctx, require_trunk=False)
    es = sets["internal"]
    pool = max((n for n in p.pools if n != "full" and n <= min(len(es), p.n_target)), default=len(es))
    spec = ReportSpec(attacker_pools=(pool,), top_k=tuple(k for k in p.ks if 1 < k <= pool) or (1,),
                      n_boot=max(p.n_boot, 100), random_state=p.audit_seed)
    frame = read_cohort(cohorts(ctx)["internal"], validate_rows=False).frame.set_index("pair_id")
    views = frame["view"].reindex(es.rows["pair_id"].astype(str)).reset_index(drop=True)
    mitigated = [mitigation.resolve(str(upstream["dp"] / HEADLINE), es, split=p.eval_split)]
    source = {"embeddings": f"{rung.name}, {p.eval_split} split", "split": p.eval_split}
    record, _ = report_build.build(es, spec, source, views=views, mitigated=mitigated)
    doc = schema.document(record, stamp(profile=p.name, result="custodian", model=rung.name))
    html, text = render.render(doc), schema.json_text(doc)
    ids = {col: es.rows[col].astype(str).tolist() for col in ("pair_id", "patient_id", "study_id")}
    reports = frame["report"].astype(str).tolist()
    schema.leak_check({"report.html": html, "report.json": text}, ids, reports)
    schema.write_outputs({tmp / "report.html": (html, "report"), tmp / "report.json": (text, "report")})


RESULT = Result("custodian", build, upstream=("dp",), source=("report", "retrieval"),
                fields=("eval_split", "pools", "ks", "n_boot", "audit_seed"))
