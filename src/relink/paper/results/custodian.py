"""Result ``custodian``: the custodian's report (``report.html``, ``report.json``) for the strongest model.

On the internal evaluation split, at the profile's headline pool, with result ``dp``'s headline run as the
mitigation. The other rungs are the attacker panel (public models an attacker could run on the same rows).
"""

from __future__ import annotations

from pathlib import Path

from ..stages import Context, cohorts, embeddings, ladder
from . import Result
from .common import headline_sets, load_embeddings
from .dp import HEADLINE


def _retrained(upstream: dict[str, Path]) -> dict | None:
    """Result ``retrained``'s contrast of the re-trained heads against the original ones (None: not run)."""
    import pandas as pd

    table = pd.read_parquet(upstream["retrained"] / "contrasts.parquet")
    rows = table[table["contrast"] == "retrained_vs_original"]
    if rows.empty:
        return None
    row = rows.iloc[0]
    return {"kind": "relative", "value": float(row["value"]), "ci": [float(row["ci_low"]), float(row["ci_high"])],
            "N": int(row["N"])}


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    from ...api.report import report
    from ...report.threat import ReportSpec

    p = ctx.profile
    rung, _, sets = headline_sets(ctx, require_trunk=False)
    es = sets["internal"]
    pool = max((n for n in p.pools if n != "full" and n <= min(len(es), p.n_target)), default=len(es))
    spec = ReportSpec(attacker_pools=(pool,), top_k=tuple(k for k in p.ks if 1 < k <= pool) or (1,),
                      n_boot=max(p.n_boot, 100), random_state=p.audit_seed)
    # the attacker panel: the strongest rung (the custodian's model) first, then the other rungs, strongest first
    others = [r for r in reversed(ladder(ctx)) if r.name != rung.name]
    panel = [es] + [load_embeddings(embeddings(ctx, r, "internal")).split(p.eval_split) for r in others]
    result = report(panel, spec, split=p.eval_split, cohort=cohorts(ctx)["internal"], retrained=_retrained(upstream),
                    names=[rung.name] + [r.name for r in others], mitigated=[upstream["dp"] / HEADLINE],
                    source={"embeddings": f"{rung.name}, {p.eval_split} split", "split": p.eval_split},
                    provenance={"profile": p.name, "result": "custodian", "model": rung.name})
    result.write(tmp / "report.html", tmp / "report.json")


RESULT = Result("custodian", build, upstream=("dp", "retrained"), source=("api/report.py", "api/results.py", "report", "retrieval"),
                fields=("eval_split", "pools", "ks", "n_boot", "audit_seed"))
