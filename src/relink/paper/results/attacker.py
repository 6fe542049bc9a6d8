"""Result ``attacker``: the stronger attacker of the chapter beyond the study (confident re-links).

An attacker who links an image only when its top candidate's score clears a threshold exposes fewer
images than Recall@1 counts, but with confidence. On the held-out internal split at the headline pool, per
rung (``state`` ``before``) and for the strongest rung's heads of results ``dp`` and ``retrained``:
``confident.parquet`` (the rows ``relinked_best`` and ``relinked_calibrated`` per ``precision_target``, with
``rung``, ``role``, ``pool``, ``state``; ``value``: the expected share of the queries re-linked correctly at
precision >= the target), ``curves.parquet`` (the precision-recall curve over the threshold)
and ``panel.json`` (result ``custodian``'s attacker panel: ``worst``, ``size``, ``pool``, ``sentence``,
``models``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...io import write_json
from ..stages import Context, ladder
from . import Result
from .common import audit_spec, eval_set, finish, headline_sets

#: the precision an attacker must reach before a link counts as confident
TARGETS = (0.9, 0.99)
DIRECTION, LEVEL = "image_to_report", "study"


def declared_pool(ctx: Context, n_rows: int) -> int:
    """The declared pool N of the chapter: the profile's headline pool, or the whole split when smaller."""
    return int(min(ctx.profile.n_target, n_rows))


def confident(ctx: Context, es, model: str, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Confident re-links of ``es`` at pool ``n``: (the metric rows of the confident targets, the curve)."""
    from ...api.audit import audit

    spec = audit_spec(ctx, ks=(1,), directions=(DIRECTION,), levels=(LEVEL,), negatives=("random",), pools=(n,),
                      confident=TARGETS)
    found = audit(es, spec, model=model)
    table = found.table
    rows = table[table["metric"].isin(("relinked_best", "relinked_calibrated"))].copy()
    curve = found.curve
    curve = curve[(curve["direction"] == DIRECTION) & (curve["level"] == LEVEL) & (curve["N"] == n)].copy()
    curve.insert(0, "model", model)
    return rows, curve


def panel(report_json: Path) -> dict:
    """The attacker panel of result ``custodian``'s report, read from its ``report.json``."""
    import json

    doc = json.loads(Path(report_json).read_text())
    level = lambda v: v["level"] if isinstance(v, dict) else str(v)  # noqa: E731
    return {"worst": doc["panel"]["worst"], "size": doc["panel"]["size"],
            "pool": int(doc["threat_model"]["attacker_pools"][0]), "sentence": doc["panel"].get("sentence"),
            "models": [{"model": m["model"], "role": m["role"], "verdict": level(m["verdict"])}
                       for m in doc["panel"]["models"]]}


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    from ...dp.apply import apply_heads, load_heads
    from .dp import RELEASE
    from .retrained import HEADS as RETRAINED_HEADS

    rows, curves = [], []

    def add(es, rung, state: str) -> None:
        n = declared_pool(ctx, len(es))
        table, curve = confident(ctx, es, rung.name, n)
        rows.append(table.assign(rung=rung.index, role="internal", pool=str(n), state=state))
        curves.append(curve.assign(rung=rung.index, state=state))

    before = {rung.index: eval_set(ctx, rung, "internal") for rung in ladder(ctx)}
    for rung in ladder(ctx):
        add(before[rung.index], rung, "before")
    # the strongest rung's heads of results dp and retrained, on the same rows
    rung, _, sets = headline_sets(ctx)
    target = sets["internal"]
    add(apply_heads(target, load_heads(upstream["dp"] / RELEASE / "heads.safetensors")), rung, "dp")
    heads = upstream["retrained"] / RETRAINED_HEADS
    if heads.is_file():  # result retrained trained them (absent on a profile without an external cohort)
        add(apply_heads(target, load_heads(heads)), rung, "retrained")
    write_json(tmp / "panel.json", panel(upstream["custodian"] / "report.json"))
    finish(tmp, ctx, "attacker", {"confident.parquet": pd.concat(rows, ignore_index=True),
                                  "curves.parquet": pd.concat(curves, ignore_index=True)},
           {"targets": list(TARGETS), "epsilon": ctx.profile.epsilon})


RESULT = Result("attacker", build, upstream=("dp", "custodian", "retrained"), source=("retrieval", "api", "dp", "report", "paper/results/dp.py",
                                                             "paper/results/retrained.py"),
                fields=("eval_split", "pools", "ks", "n_boot", "audit_seed", "epsilon", "dp_batch_size",
                        "dp_temperature", "dp_seed"))
