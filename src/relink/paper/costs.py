"""What the ``mimic`` profile costs at the study's sizes: measured rates (benchmarks/costs.py) times work.

The work is counted from the profile and the study's numbers (as
:mod:`relink.paper.claims` holds them), never typed: the held-out split of
43,793 MIMIC-CXR pairs, a validation bank a tenth of it (as the ``study``
re-split draws it), the external CheXpert Plus cohort of 29,296 pairs, and
the rest of the 406,241 pairs for training. For each stage the rate measured
on the CPU gives a CPU time; the GPU column is a projection, labelled so:

* embedding on one GPU: the model's counted FLOPs per pair over an assumed
  sustained GPU rate (:data:`GPU_FLOPS`), or, if slower, full-size JPEG
  decoding by :data:`LOADER_CORES` loader processes at the measured
  per-core rate;
* the audit and the DP sweep: not projected. relink trains the DP heads on
  the CPU whatever the machine, and the audit's blocked products can use a
  GPU, for which the CPU time is an upper bound.

An archive (:func:`archive_projection`): the audit of 1 and 10 million
pairs, from ``benchmarks/audit_scale.py``'s measurements (time per score
cell of the product pass here, and the audit's time over the bare product of
the same shapes). On GPUs it is a projection: the bare product at an assumed
fp32 rate (:data:`GPU_FP32_FLOPS`), times the counting overhead measured on
this CPU, divided over P processes (each takes a share of the query rows and
streams every candidate; the counts gathered once are megabytes).

Disk: every EmbeddingSet the profile caches (float32 arrays of the measured
widths), the rows tables aside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

#: Assumed sustained rate of one data-centre GPU on ViT-B/16 inference in mixed precision, FLOP/s:
#: a third of an A100's dense fp16 tensor-core peak of 312 TFLOP/s (batches of 256, as relink embeds).
GPU_FLOPS = 312e12 / 3
GPU_NAME = "one A100-class GPU"
#: Assumed CPU cores decoding images for that GPU (DataLoader workers).
LOADER_CORES = 16
#: Assumed sustained fp32 rate of that GPU on the audit's products, FLOP/s: two thirds of an A100's
#: 19.5 TFLOP/s fp32 peak. fp32, not tensor cores: the audit turns TF32 off, as its comparisons need.
GPU_FP32_FLOPS = 19.5e12 * 2 / 3
#: Archive sizes (pairs) and GPU counts the appendix projects the audit to.
ARCHIVE_PAIRS = (1_000_000, 10_000_000)
GPU_COUNTS = (1, 8, 64)


@dataclass(frozen=True)
class StudySizes:
    heldout: int
    bank: int
    train: int
    external: int
    internal: int

    @property
    def total(self) -> int:
        return self.internal + self.external


def study_sizes(profile) -> StudySizes:
    """The ``mimic`` profile's splits at the study's size (``split = study``)."""
    from .claims import CLAIMS

    study = {c.key: int(c.study) for c in CLAIMS if c.kind == "count"}
    external = study["external_eval"]
    internal = study["pairs_total"] - external  # the abstract's total holds both cohorts
    heldout = profile.heldout_pairs
    bank = max(1, heldout // 10)
    return StudySizes(heldout, bank, internal - heldout - bank, external, internal)


def _rungs() -> int:
    from ..models.ladder import REAL_LADDER

    return len(REAL_LADDER)


def workload(profile) -> dict[str, Any]:
    """How much of each kind of work the profile does at the study's size."""
    s = study_sizes(profile)
    rungs = _rungs()
    private_runs = len({e for e in profile.epsilons if e is not None} | {profile.epsilon})
    runs = private_runs + (1 if None in profile.epsilons else 0)
    return {
        "sizes": s,
        "rungs": rungs,
        # every rung embeds the held-out split and the external cohort; the strongest embeds all of MIMIC-CXR
        "embedded_pairs": (rungs - 1) * (s.heldout + s.external) + s.total,
        "audited_pairs2": rungs * (s.heldout**2 + s.external**2),
        "audited_queries": rungs * (s.heldout + s.external),
        "dp_runs": runs,
        "private_runs": private_runs,
        "dp_pair_epochs": runs * profile.dp_epochs * s.train,
        # before, then each run of the sweep, on both cohorts
        "recall_pairs2": (1 + runs) * (s.heldout**2 + s.external**2),
        "recall_queries": (1 + runs) * (s.heldout + s.external),
        # the sets the cache holds: each rung's embeddings, plus the DP result's re-projected internal sets
        "cached_pairs": (rungs - 1) * (s.heldout + s.external) + s.total + 2 * s.internal,
    }


def hours(seconds: float) -> str:
    """A duration as a reader wants it: minutes under two hours, else hours, else days."""
    if seconds < 120 * 60:
        return f"{seconds / 60:,.0f} min" if seconds >= 60 else "under 1 min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 86400:,.1f} days"


def cost_table(measured: dict[str, Any], profile) -> pd.DataFrame:
    """One row per stage: the work, the measured rate, CPU time here, one GPU (projection)."""
    w = workload(profile)
    emb, dec, aud, dp = measured["embedding"], measured["decoding"], measured["audit"], measured["dp"]
    cpus = measured["machine"]["cpus"]
    n_emb = w["embedded_pairs"]
    emb_cpu = n_emb / emb["pairs_per_s"] + n_emb * dec["seconds_per_image"] / cpus
    emb_gpu = max(n_emb * emb["flops_per_pair"] / GPU_FLOPS, n_emb * dec["seconds_per_image"] / LOADER_CORES)

    def audit_time(name: str, pairs2: int, queries: int) -> float:
        return pairs2 * aud["per_pair2"][name] + queries * aud["bootstrap_per_query"][name]

    t_audit = audit_time("audit", w["audited_pairs2"], w["audited_queries"])
    t_hard = audit_time("hard_negatives", w["audited_pairs2"], w["audited_queries"])
    t_recall = audit_time("dp_recall", w["recall_pairs2"], w["recall_queries"])
    t_train = w["dp_pair_epochs"] * dp["per_pair_epoch"]
    t_account = w["private_runs"] * dp["accountant"]["seconds"] + w["dp_runs"] * dp["setup_seconds"]
    rows = [
        ("Embedding (image + report, trunks kept)", f"{n_emb:,} pairs, {w['rungs']} models",
         f"{emb['pairs_per_s']:.2f} pairs/s + {1000 * dec['seconds_per_image']:.0f} ms decoding per image", emb_cpu, hours(emb_gpu)),
        ("Audit: random pools, both directions and levels", f"{w['rungs']} models x both cohorts",
         f"{1e9 * aud['per_pair2']['audit']:.2f} s per 10⁹ pair²", t_audit, "≤ CPU time"),
        ("Audit: pathology-matched pools", f"{w['rungs']} models x both cohorts",
         f"{1e9 * aud['per_pair2']['hard_negatives']:.2f} s per 10⁹ pair²", t_hard, "≤ CPU time"),
        ("DP sweep: training the heads", f"{w['dp_runs']} runs x {profile.dp_epochs} epochs x {w['sizes'].train:,} pairs",
         f"{1e6 * dp['per_pair_epoch']:.0f} µs per pair and epoch", t_train, "as CPU (trains on the CPU)"),
        ("DP sweep: noise calibration and set-up", f"{w['dp_runs']} runs",
         f"{dp['accountant']['seconds']:.0f} s calibration + {dp['setup_seconds']:.0f} s set-up per run", t_account, "as CPU"),
        ("DP sweep: re-audit of each run", f"{1 + w['dp_runs']} states x both cohorts",
         f"{1e9 * aud['per_pair2']['dp_recall']:.2f} s per 10⁹ pair²", t_recall, "≤ CPU time"),
    ]
    frame = pd.DataFrame(rows, columns=["stage", "work", "measured rate (this CPU)", "cpu_seconds", "one GPU (projection)"])
    total = frame["cpu_seconds"].sum()
    frame.loc[len(frame)] = ["Total", "", "", total, ""]
    frame["CPU here"] = frame["cpu_seconds"].map(hours)
    return frame.drop(columns="cpu_seconds")[["stage", "work", "measured rate (this CPU)", "CPU here", "one GPU (projection)"]]


def disk(measured: dict[str, Any], profile) -> dict[str, float]:
    """Gigabytes of the cache: the EmbeddingSets (float32 arrays at the measured widths)."""
    w = workload(profile)
    per_pair = measured["embedding"]["bytes_per_pair"]
    return {"bytes_per_pair": per_pair, "pairs": w["cached_pairs"], "gb": w["cached_pairs"] * per_pair / 1e9}


def gpu_embedding_note(measured: dict[str, Any]) -> dict[str, Any]:
    """The numbers behind the GPU projection, for the prose."""
    emb, dec = measured["embedding"], measured["decoding"]
    return {"gpu_tflops": GPU_FLOPS / 1e12, "gpu_name": GPU_NAME, "loader_cores": LOADER_CORES,
            "gflop_per_pair": emb["flops_per_pair"] / 1e9, "gpu_pairs_per_s": GPU_FLOPS / emb["flops_per_pair"],
            "decode_per_s": LOADER_CORES / dec["seconds_per_image"],
            "cpu_gflops": emb["pairs_per_s"] * emb["flops_per_pair"] / 1e9}


def audit_scale_table(scale: dict[str, Any]) -> pd.DataFrame:
    """``benchmarks/audit_scale.py``'s measurements, one row per size and process count."""
    rows = [{"pairs (Q = R)": f"{r['n']:,}", "processes": r["processes"], "audit": hours_seconds(r["wall_s"]),
             "bare product": hours_seconds(r["bare_s"]), "audit / product": f"{r['ratio']:.2f}",
             "peak RSS": f"{r['peak_mib']:,.0f} MiB",
             "above Python + torch": f"{r['over_torch_mib']:,.0f} MiB"}
            for r in scale["rows"]]
    return pd.DataFrame(rows)


def budget_kept(scale: dict[str, Any]) -> str:
    """Whether every measured run's peak stayed within ``--memory`` above Python + torch (the benchmark's own
    ``within_budget`` per run), as a clause."""
    over = sorted({r["n"] for r in scale["rows"] if not r["within_budget"]})
    if not over:
        return "within the budget at every size"
    return "over the budget at " + ", ".join(f"{n:,}" for n in over) + " pairs"


def hours_seconds(seconds: float) -> str:
    """Seconds under ten minutes (a benchmark's times compare closely), else as :func:`hours` says it."""
    return f"{seconds:,.1f} s" if seconds < 600 else hours(seconds)


def counting_overhead(scale: dict[str, Any]) -> float:
    """The one-process audit's time over the bare product of the same shapes (median over sizes)."""
    import numpy as np

    return float(np.median([r["wall_s"] / r["bare_s"] for r in scale["rows"] if r["processes"] == 1]))


def archive_projection(scale: dict[str, Any]) -> pd.DataFrame:
    """The audit of an archive: this CPU (from the fitted time per score cell) and P GPUs (a projection)."""
    d = scale["d"]
    per_cell = scale["fit"]["wall_s"]["seconds_per_cell"]
    overhead = counting_overhead(scale)
    rows = []
    for n in ARCHIVE_PAIRS:
        product = 2.0 * n * n * d / GPU_FP32_FLOPS
        row = {"pairs (Q = R)": f"{n:,}", "embeddings (both sides, fp32)": f"{2 * n * d * 4 / 1e9:,.0f} GB",
               "this CPU, 1 process": hours(n * n * per_cell)}
        row.update({f"{p} GPU{'s' if p > 1 else ''} (projection)": hours(product * overhead / p) for p in GPU_COUNTS})
        rows.append(row)
    return pd.DataFrame(rows)
