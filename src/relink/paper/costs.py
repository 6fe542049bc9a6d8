"""What the ``mimic`` profile costs at the study's sizes: measured rates (benchmarks/costs.py) times work.

The work is counted from the profile and the study's numbers (:data:`relink.paper.claims.CLAIMS`), never
typed. A GPU column is a projection, labelled so: embedding is the model's FLOPs per pair over
:data:`GPU_FLOPS`, or, if slower, JPEG decoding by :data:`LOADER_CORES` loaders; the audit is an upper
bound (its CPU time) and the DP heads train on the CPU whatever the machine. An archive's audit
(:func:`archive_projection`) is the bare product at :data:`GPU_FP32_FLOPS` times the counting overhead
measured here, divided over P processes (each takes a share of the query rows).
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
    """Whether every measured run stayed ``within_budget`` (``--memory`` above Python + torch), as a clause."""
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


# The study profile, measured: ``tools/paper_memory.py --profile study``'s record (per step of a cold run, per
# chapter and for the book, ``wall_s`` and ``peak_process_mib``, plus ``complete``, ``divided_by``, ``settings``).

#: what is asked of the study profile on this machine: end to end within this time, each process within this
STUDY_LIMIT_S = 90 * 60
STUDY_LIMIT_MIB = 4096


def study_run(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """``record`` if it is a complete run of the ``study`` profile as shipped (full size, no ``--set``)."""
    if not record or record.get("profile") != "study" or not record.get("complete"):
        return None
    if record.get("divided_by", 1) != 1 or record.get("settings"):
        return None
    return record


def _steps(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Step name -> measurement: the steps, then the chapters summed into one line, then the book."""
    out = dict(record["stages"])
    if record.get("chapters"):
        ch = list(record["chapters"].values())
        out["chapters (each in a fresh kernel)"] = {"wall_s": sum(m["wall_s"] for m in ch),
                                                    "peak_process_mib": max(m["peak_process_mib"] for m in ch),
                                                    **({"cpu_s": sum(m["cpu_s"] for m in ch)}
                                                       if all("cpu_s" in m for m in ch) else {})}
    if "book" in record:
        out["book"] = record["book"]
    return out


def side_by_side(default: dict[str, Any], study: dict[str, Any] | None) -> pd.DataFrame:
    """One row per step of a cold run: the default profile's wall time and peak beside the study profile's."""
    d, s = _steps(default), _steps(study) if study else {}
    with_cpu = any("cpu_s" in m for run in (d, s) for m in run.values())
    rows = []
    for name in [*d, *(n for n in s if n not in d)]:
        row = {"step": name}
        for label, run in (("default", d), ("study", s)):
            m = run.get(name)
            row[f"{label}: wall"] = hours_seconds(m["wall_s"]) if m else "not measured"
            if with_cpu:  # CPU time of the step's processes: what it costs whatever else the machine ran
                row[f"{label}: CPU"] = hours_seconds(m["cpu_s"]) if m and "cpu_s" in m else "not recorded"
            row[f"{label}: peak (MiB)"] = f"{int(m['peak_process_mib']):,d}" if m else "not measured"
        rows.append(row)
    return pd.DataFrame(rows)


def study_verdict(study: dict[str, Any]) -> dict[str, Any]:
    """The study run against the issue's limits: its total wall time and largest process, and whether each held."""
    steps = _steps(study)
    total = sum(m["wall_s"] for m in steps.values())
    cpu = sum(m["cpu_s"] for m in steps.values()) if all("cpu_s" in m for m in steps.values()) else None
    name, peak = max(((n, int(m["peak_process_mib"])) for n, m in steps.items()), key=lambda t: t[1])
    return {"total_s": total, "total": hours(total), "within_time": total <= STUDY_LIMIT_S, "peak_step": name,
            "cpu_s": cpu, "cpu": None if cpu is None else hours(cpu),
            "peak_mib": peak, "within_memory": peak <= STUDY_LIMIT_MIB,
            "limit_min": STUDY_LIMIT_S // 60, "limit_mib": STUDY_LIMIT_MIB}


def study_projection(study: dict[str, Any], study_profile, profile) -> pd.DataFrame:
    """The credentialed ``profile`` at the study's size, recomputed from the study run's own measurements.

    The study profile audits the study's sizes exactly: its audit steps scale by the number of models only
    (at the synthetic model's width). Its DP step scales per run, epoch and private pair. Embedding is not
    projected from it (the synthetic models are far smaller than the public ones)."""
    steps, w = study["stages"], workload(profile)
    rungs_here = study_profile.train_rungs
    audit_steps = [n for n in ("result audit", "result hard_negatives") if n in steps]
    rows = []
    if audit_steps:
        t = sum(steps[n]["wall_s"] for n in audit_steps)
        rows.append(("Audit: random and pathology-matched pools", f"{hours_seconds(t)} for {rungs_here} models",
                     f"{w['rungs']} models", t * w["rungs"] / rungs_here))
    if "result dp" in steps:
        runs_here = len({e for e in study_profile.epsilons if e is not None} | {study_profile.epsilon}) + \
            (1 if None in study_profile.epsilons else 0)
        work_here = runs_here * study_profile.dp_epochs * study_profile.fit_max_pairs
        t = steps["result dp"]["wall_s"]
        rows.append(("DP sweep: training, privacy audit and re-audit of each run",
                     f"{hours_seconds(t)} for {runs_here} runs x {study_profile.dp_epochs} epochs x "
                     f"{study_profile.fit_max_pairs:,} pairs",
                     f"{w['dp_runs']} runs x {profile.dp_epochs} epochs x {w['sizes'].train:,} pairs",
                     t * w["dp_pair_epochs"] / work_here))
    frame = pd.DataFrame(rows, columns=["stage", "measured (study profile)", "work (credentialed)", "seconds"])
    frame["CPU here (projection)"] = frame.pop("seconds").map(hours)
    return frame


def study_sentence(study: dict[str, Any] | None, study_profile) -> str:
    """What the appendix says of the study run: its totals against the limits and its caps."""
    caps = study_profile.caps()
    capped = ("It does less than the study in these places, each a field of the profile: " + "; ".join(caps) + "."
              if caps else "It caps nothing.")
    if study is None:
        return ("The `study` profile (`make paper PROFILE=study`) has not been measured here: "
                "`benchmarks/results/study_run.json` holds no complete run of it, so its column says "
                "*not measured*. " + capped)
    v = study_verdict(study)
    time_clause = "within" if v["within_time"] else "over"
    mem_clause = "within" if v["within_memory"] else "over"
    return (f"A cold run of the `study` profile on {study.get('measured', 'an unrecorded date')} ({study['cpus']} CPU "
            f"cores) took {v['total']} end to end, {time_clause} the {v['limit_min']} minutes it is made for; its "
            f"largest process ({v['peak_step']}) peaked at {v['peak_mib']:,d} MiB, {mem_clause} the "
            f"{v['limit_mib']:,d} MiB limit. "
            + (f"Its processes used {v['cpu']} of CPU time in all (on a busy machine the wall time grows, the CPU "
               "time much less). " if v["cpu"] else "") + capped)
