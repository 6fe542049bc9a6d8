"""Risk against N: expected images re-linked, and the lift, over a log grid of attacker pools (one extra
random-pool pass). The verdict follows the declared N, which is an assumption: a weak model is far above chance at
N = 100 and near it at N = 10,000, so the page shows the whole curve.
"""

from __future__ import annotations

from typing import Any

from ..embeddings import EmbeddingSet
from ..retrieval.audit import audit_queries, summarise
from ..retrieval.spec import AuditSpec
from .risk import risk_rows

GUIDE = ("Choosing N: N is how many candidate reports an attacker could plausibly hold for one released image, its "
         "own report among them. A hospital insider or a partner holding a department's reports for the same weeks "
         "might narrow one image to a few hundred candidates; someone holding a whole hospital's or registry's reports "
         "faces tens of thousands; side information (age, sex, date, view) narrows any pool further. Declare the "
         "smallest pool such an attacker could reach: the count of re-linked images rises as N falls.")


def grid(n_rows: int, declared: tuple[int, ...]) -> tuple[int, ...]:
    """A 1-2-5 log grid of pool sizes from 2 to the audited pair count, with the declared pools."""
    out, base = [], 1
    while base <= n_rows:
        out.extend(m * base for m in (1, 2, 5) if 2 <= m * base <= n_rows)
        base *= 10
    return tuple(sorted(set(out) | {n_rows} | {p for p in declared if p <= n_rows}))


def risk_curve(es: EmbeddingSet, pools: tuple[int, ...], released: int, coverage: float, n_boot: int,
               ci: float) -> list[dict[str, Any]]:
    """Risk rows (:func:`relink.report.risk.risk_rows`) at study level, random pools, K = 1 and 10, over the grid."""
    n = len(es)
    ks = (1, 10) if n >= 10 else (1,)  # the audit refuses K above a pool: the K = 10 curve starts at N = 10
    spec = AuditSpec(pools=tuple(p for p in grid(n, pools) if p >= max(ks)), ks=ks, directions=("image_to_report", "report_to_image"),
                     levels=("study",), negatives=("random",), n_boot=n_boot, ci=ci)
    frame = summarise(audit_queries(es, spec))
    rows = risk_rows(frame[(frame.metric == "recall") & (frame.N >= frame.K)], released, coverage)
    keep = ("direction", "N", "K", "expected_images", "expected_images_ci", "chance_images", "lift", "lift_ci")
    return [{k: r[k] for k in keep} for r in rows]
