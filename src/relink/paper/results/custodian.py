"""Result ``custodian``: the custodian's report (``relink report``) for the profile's strongest model.

``report.html`` (the standalone page) and ``report.json`` (the same numbers,
schema ``relink-report/2``) for the internal evaluation split: the attacker
holds the profile's headline pool of reports (10,000, or the largest finite
pool the split fills), the custodian releases every image of the split, and
the headline DP run of result ``dp`` is the mitigation compared before/after.
"""

from __future__ import annotations

from pathlib import Path

from ..stages import Context, cohorts
from . import Result
from .common import headline_sets
from .dp import HEADLINE


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    from ...api.report import report
    from ...report.threat import ReportSpec

    p = ctx.profile
    rung, _, sets = headline_sets(ctx, require_trunk=False)
    es = sets["internal"]
    pool = max((n for n in p.pools if n != "full" and n <= min(len(es), p.n_target)), default=len(es))
    spec = ReportSpec(attacker_pools=(pool,), top_k=tuple(k for k in p.ks if 1 < k <= pool) or (1,),
                      n_boot=max(p.n_boot, 100), random_state=p.audit_seed)
    result = report(es, spec, split=p.eval_split, cohort=cohorts(ctx)["internal"],
                    mitigated=[upstream["dp"] / HEADLINE],
                    source={"embeddings": f"{rung.name}, {p.eval_split} split", "split": p.eval_split},
                    provenance={"profile": p.name, "result": "custodian", "model": rung.name})
    result.write(tmp / "report.html", tmp / "report.json")


RESULT = Result("custodian", build, upstream=("dp",), source=("api/report.py", "api/results.py", "report", "retrieval"),
                fields=("eval_split", "pools", "ks", "n_boot", "audit_seed"))
