"""What the new heads do, as tables: before/after, transfer, and the privacy-utility frontier.

* :func:`before_after` — Recall@K at pool N (default Recall@1 at N=10,000, or
  the whole set when smaller) of the same rows under the old and the new
  heads, with CIs from the audit and the relative change
  ``(after - before) / before``;
* :func:`transfer` — the same for another cohort (the external one) with the
  heads applied to its cached trunk features, no retraining;
* :func:`epsilon_sweep` — one private fit per epsilon (``None`` =
  non-private) and, per evaluation set, the recall change beside the
  linear-probe macro AUROC change: the frontier.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from ..utility.recall import DIRECTION, recall_at
from .apply import apply_heads

COMPARE_COLUMNS = ("model", "cohort", "heads", "direction", "N", "K", "before", "before_ci_low", "before_ci_high",
                   "after", "after_ci_low", "after_ci_high", "chance", "change", "relative_change", "n_queries")


def _cohort(es: EmbeddingSet) -> str:
    return ",".join(sorted(map(str, es.rows["cohort"].unique())))


def before_after(before: EmbeddingSet, after: EmbeddingSet, pools: Iterable[int] = (10_000,), ks: Iterable[int] = (1,),
                 directions: Iterable[str] = (DIRECTION,), n_boot: int = 200, random_state: int = 0,
                 audit_fn: Callable | None = None) -> pd.DataFrame:
    """Recall of the same rows before and after (columns :data:`COMPARE_COLUMNS`)."""
    ids_b = before.rows["pair_id"].astype(str).to_numpy()
    ids_a = after.rows["pair_id"].astype(str).to_numpy()
    if len(ids_b) != len(ids_a) or not (ids_b == ids_a).all():
        raise RelinkError("before/after sets must hold the same rows in the same order (re-project with apply_heads)")
    heads = (after.meta.get("heads") or {}).get("fingerprint", "")
    out = []
    for N in pools:
        for K in ks:
            for direction in directions:
                b = recall_at(before, N, K, direction, n_boot, random_state, audit_fn)
                a = recall_at(after, N, K, direction, n_boot, random_state, audit_fn)
                vb, va = float(b["value"]), float(a["value"])
                out.append({"model": str(before.meta.get("model", "")), "cohort": _cohort(before), "heads": heads,
                            "direction": direction, "N": int(b["N"]), "K": int(K), "before": vb,
                            "before_ci_low": float(b["ci_low"]), "before_ci_high": float(b["ci_high"]), "after": va,
                            "after_ci_low": float(a["ci_low"]), "after_ci_high": float(a["ci_high"]),
                            "chance": float(b["chance"]), "change": va - vb,
                            "relative_change": (va - vb) / vb if vb > 0 else float("nan"), "n_queries": int(b["n_queries"])})
    return pd.DataFrame(out, columns=list(COMPARE_COLUMNS))


def transfer(external: EmbeddingSet, heads, **kwargs) -> pd.DataFrame:
    """:func:`before_after` on another cohort: its trunk features through ``heads``, no retraining."""
    return before_after(external, apply_heads(external, heads), **kwargs)


def _probe_macro(es: EmbeddingSet, random_state: int) -> float:
    from ..utility.probe import probe_embeddings

    table = probe_embeddings(es, features="projected", random_state=random_state)
    return float(table.loc[table["label"] == "macro", "value"].iloc[0])


def epsilon_sweep(train: EmbeddingSet, bank: EmbeddingSet, eval_sets: Mapping[str, EmbeddingSet] | Iterable[EmbeddingSet],
                  epsilons: Iterable[float | None] = (0.1, 0.34, 1, 3, 8, None), delta: float = 6e-6, init=None,
                  fit_kwargs: dict | None = None, N: int = 10_000, K: int = 1, probe: bool = True, n_boot: int = 100,
                  random_state: int = 0, audit_fn: Callable | None = None) -> pd.DataFrame:
    """The privacy-utility frontier: one row per (epsilon, evaluation set).

    ``train``: the private rows (trunk features); ``bank``: public
    negatives; ``eval_sets``: sets to re-project (a mapping name -> set, or
    sets named by their cohort); ``init``: the starting heads (default: the
    model named in ``train.meta["model"]``). Columns: ``epsilon`` (target;
    NaN = non-private), ``private``, ``accountant``, ``epsilon_spent``,
    ``rdp_epsilon``, ``noise_multiplier``, ``eval``, ``cohort``, ``N``,
    ``K``, ``recall_before``, ``recall_after``, ``relative_change``, and with
    ``probe`` ``probe_before``, ``probe_after``, ``probe_change`` (macro
    linear-probe AUROC on projected image embeddings).
    """
    from .train import fit_heads

    if not isinstance(eval_sets, Mapping):
        eval_sets = {_cohort(es): es for es in eval_sets}
    if init is None:
        from ..models import load_model
        from ..models.heads import extract_heads

        spec = train.meta.get("model")
        if not spec:
            raise RelinkError("epsilon_sweep: no init heads given and the training set's meta.json names no model")
        init = extract_heads(load_model(spec).model)
    fit_kwargs = dict(fit_kwargs or {})
    fit_kwargs.setdefault("random_state", random_state)
    base = {name: (recall_at(es, N, K, DIRECTION, n_boot, random_state, audit_fn),
                   _probe_macro(es, random_state) if probe else np.nan) for name, es in eval_sets.items()}
    out = []
    for eps in epsilons:
        private = eps is not None
        heads, report = fit_heads(train, bank, init, epsilon=eps, delta=delta if private else None, private=private,
                                  progress=False, **fit_kwargs)
        for name, es in eval_sets.items():
            after = apply_heads(es, heads)
            r = recall_at(after, N, K, DIRECTION, n_boot, random_state, audit_fn)
            rb, pb = base[name]
            row = {"epsilon": float(eps) if private else np.nan, "private": private, "accountant": report["accountant"],
                   "epsilon_spent": report["epsilon"], "rdp_epsilon": report["rdp_epsilon"],
                   "noise_multiplier": report["noise_multiplier"], "eval": name, "cohort": _cohort(es), "N": int(r["N"]),
                   "K": K, "recall_before": float(rb["value"]), "recall_after": float(r["value"]),
                   "relative_change": (float(r["value"]) - float(rb["value"])) / float(rb["value"]) if rb["value"] > 0 else np.nan}
            if probe:
                pa = _probe_macro(after, random_state)
                row.update(probe_before=pb, probe_after=pa, probe_change=pa - pb)
            out.append(row)
    return pd.DataFrame(out)
