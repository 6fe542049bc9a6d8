# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: relink,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   relink:
#     inputs:
#     - benchmarks/results/costs.json
#     - benchmarks/results/audit_scale.json
#     - benchmarks/results/paper_memory.json
#     - benchmarks/results/study_run.json
#     results: []
# ---

# %% [markdown]
# # What the `mimic` profile costs
#
# The credentialed profile runs the same code as the synthetic one on the
# study's cohorts: four public models embed the held-out MIMIC-CXR split and
# the external cohort, the strongest of them all of MIMIC-CXR (its training
# split feeds the DP step), every model is audited on both cohorts, and the
# heads of the strongest are retrained at every privacy budget of the sweep.
# This page scales throughput measured by `benchmarks/costs.py`, through the
# same code paths, by the sizes of that work at the study's scale. Run
# `python benchmarks/costs.py` on your own machine to replace the measurements;
# the page is rebuilt from them.

# %% tags=["parameters", "remove-cell"]
profile = "synthetic"  # a profile name, or the record `relink paper` passes (this page reads none of its results)
artifacts = ""

# %% tags=["remove-cell"]
import json

from IPython.display import display

from relink.paper import costs
from relink.paper.display import show
from relink.paper.notebook import glue
from relink.paper.profiles import PROFILES
from relink.provenance import REPO_ROOT

measured = json.loads((REPO_ROOT / "benchmarks" / "results" / "costs.json").read_text())
mimic = PROFILES["mimic"]
sizes = costs.study_sizes(mimic)
work = costs.workload(mimic)
gpu = costs.gpu_embedding_note(measured)
space = costs.disk(measured, mimic)

glue("cost_heldout", sizes.heldout)
glue("cost_bank", sizes.bank)
glue("cost_train", sizes.train)
glue("cost_external", sizes.external)
glue("cost_rungs", work["rungs"])
glue("cost_embedded", work["embedded_pairs"])
glue("cost_runs", work["dp_runs"])
glue("cost_epochs", mimic.dp_epochs)
glue("cost_date", measured["measured"])
glue("cost_cpus", measured["machine"]["cpus"])
glue("cost_matmul", measured["matmul_gflops"])
glue("cost_model", measured["embedding"]["model"])
glue("cost_pairs_per_s", measured["embedding"]["pairs_per_s"])
glue("cost_cpu_gflops", gpu["cpu_gflops"])
glue("cost_gflop_pair", gpu["gflop_per_pair"])
glue("cost_gpu_name", gpu["gpu_name"])
glue("cost_gpu_tflops", gpu["gpu_tflops"])
glue("cost_gpu_pairs_per_s", gpu["gpu_pairs_per_s"])
glue("cost_loader_cores", gpu["loader_cores"])
glue("cost_decode_ms", 1000 * measured["decoding"]["seconds_per_image"])
glue("cost_decode_per_s", gpu["decode_per_s"])
glue("cost_jpeg_w", measured["decoding"]["size"][0])
glue("cost_jpeg_h", measured["decoding"]["size"][1])
glue("cost_audit_n", measured["audit"]["candidates"])
glue("cost_dp_n", measured["dp"]["private_pairs"])
glue("cost_dp_bank", measured["dp"]["bank"])
glue("cost_dp_unit", measured["dp"].get("privacy_unit", "pair"))
glue("cost_dp_patients", measured["dp"].get("patients", measured["dp"]["private_pairs"]))
glue("cost_dp_width", measured["dp"].get("max_pairs_per_patient", 1))
glue("cost_disk_gb", space["gb"])
glue("cost_disk_pairs", space["pairs"])
glue("cost_disk_kb", space["bytes_per_pair"] / 1024)

scale = json.loads((REPO_ROOT / "benchmarks" / "results" / "audit_scale.json").read_text())
glue("scale_budget", scale["memory"])
glue("scale_largest", max(r["n"] for r in scale["rows"]))
glue("scale_above_torch", max(r["over_torch_mib"] for r in scale["rows"]))
glue("scale_within", costs.budget_kept(scale))
glue("scale_torch", max(r["baseline_torch_mib"] for r in scale["rows"]))
glue("scale_start_low", min(r["ready_mib"] - r["baseline_torch_mib"] for r in scale["rows"]))
glue("scale_start_high", max(r["ready_mib"] - r["baseline_torch_mib"] for r in scale["rows"]))
glue("scale_overhead", costs.counting_overhead(scale))
glue("scale_gpu_tflops", costs.GPU_FP32_FLOPS / 1e12)
same = all(len({r["table_sha"] for r in scale["rows"] if r["n"] == n}) == 1 for n in {r["n"] for r in scale["rows"]})
glue("scale_same_tables", "byte-identical at every size" if same
     else "not identical at some size (see benchmarks/results/audit_scale.json)")

# %% [markdown]
# ## The work at the study's size
#
# With the study's split (`split = study`; the reproducibility appendix) the
# held-out set holds {glue:text}`cost_heldout:,d` MIMIC-CXR pairs, the
# validation bank {glue:text}`cost_bank:,d`, the training split
# {glue:text}`cost_train:,d` and the external cohort
# {glue:text}`cost_external:,d`. The {glue:text}`cost_rungs:d` models embed
# {glue:text}`cost_embedded:,d` image-report pairs in all; the DP sweep trains
# {glue:text}`cost_runs:d` runs of {glue:text}`cost_epochs:d` epochs each.
#
# ## Measured here, projected for a GPU

# %% tags=["remove-input"]
display(show(costs.cost_table(measured, mimic), uid="costs",
             caption="The mimic profile at the study's size: CPU time from rates measured on this machine; "
                     "the GPU column is a projection (see below), not a measurement"))

# %% [markdown]
# The rates were measured on {glue:text}`cost_date` on a machine with
# {glue:text}`cost_cpus:d` CPU cores (a float32 matrix product ran at
# {glue:text}`cost_matmul:.0f` GFLOP/s): {glue:text}`cost_model` with random
# weights embedded {glue:text}`cost_pairs_per_s:.2f` pairs per second
# ({glue:text}`cost_cpu_gflops:.0f` GFLOP/s achieved, at
# {glue:text}`cost_gflop_pair:.1f` GFLOP per pair as torch's FLOP counter
# counts it); opening and preprocessing one
# {glue:text}`cost_jpeg_w:,d` × {glue:text}`cost_jpeg_h:,d` JPEG took
# {glue:text}`cost_decode_ms:.0f` ms on one core. The audit was timed on
# {glue:text}`cost_audit_n:,d` random pairs and scaled by the square of the
# pair count (plus the bootstrap, linear in the queries); the DP step on
# {glue:text}`cost_dp_n:,d` random private pairs of
# {glue:text}`cost_dp_patients:,d` patients (at most
# {glue:text}`cost_dp_width:d` pairs each; privacy unit: one
# {glue:text}`cost_dp_unit`) against a bank of {glue:text}`cost_dp_bank:,d`.
# With patient units each sampled patient is padded to the largest patient's
# pair count, so a cohort with a few patients of very many studies costs more
# per pair than this.
#
# **The GPU column is a projection, not a measurement** (no GPU was used).
# It assumes {glue:text}`cost_gpu_name` sustaining
# {glue:text}`cost_gpu_tflops:.0f` TFLOP/s on ViT-B/16 inference in mixed
# precision (a third of its fp16 tensor-core peak), which at the counted FLOPs
# is {glue:text}`cost_gpu_pairs_per_s:,.0f` pairs per second, and
# {glue:text}`cost_loader_cores:d` CPU cores decoding JPEGs for it at the rate
# measured here ({glue:text}`cost_decode_per_s:,.0f` images per second): the
# embedding takes the longer of the two. The DP heads train on the CPU in
# relink whatever the machine, and the audit's matrix products can use a GPU,
# for which the CPU figure is an upper bound; neither is projected.
#
# ## Disk
#
# The cache holds every embedding set the profile makes,
# {glue:text}`cost_disk_pairs:,d` rows of {glue:text}`cost_disk_kb:.1f` KiB
# (projected embeddings and trunk features, float32): about
# {glue:text}`cost_disk_gb:.1f` GB, besides the images themselves, which
# stay where the dataset keeps them.
#
# ## Auditing an archive
#
# A custodian's archive may hold millions of studies. `relink audit` reads
# the embeddings in blocks under a memory budget (`--memory`) and splits the
# query rows over the processes of a `torchrun` launch (`--distributed`);
# neither changes a number of its table. `benchmarks/audit_scale.py` measured
# it on random embeddings (d = 512, fp32) under a budget of
# {glue:text}`scale_budget`, up to {glue:text}`scale_largest:,d` pairs a side:

# %% tags=["remove-input"]
display(show(costs.audit_scale_table(scale), uid="audit-scale",
             caption="relink audit with its default options (both directions, every pool and K, bootstrap "
                     "intervals) against the bare product of the same shapes, measured on this machine; peak RSS "
                     "per process"))

# %% [markdown]
# The budget counts everything the audit adds to the interpreter with torch
# imported (which held {glue:text}`scale_torch:,.0f` MiB here): the libraries
# it loads (pandas, Arrow's parquet reader, scipy), the row table, the
# per-pair counts and the blocks it streams. The peak stayed at most
# {glue:text}`scale_above_torch:,.0f` MiB above that baseline,
# {glue:text}`scale_within`. Of that, the libraries and the row
# table took {glue:text}`scale_start_low:,.0f` to
# {glue:text}`scale_start_high:,.0f` MiB when the audit began. The tables of
# one and two processes were {glue:text}`scale_same_tables`.
#
# **The GPU columns below are a projection, not a measurement.** They take
# the bare product of an archive's shapes at an assumed
# {glue:text}`scale_gpu_tflops:.0f` TFLOP/s of fp32 products per GPU (the
# audit turns TF32 off) and multiply it by the audit's overhead over the bare
# product measured here ({glue:text}`scale_overhead:.2f`), divided evenly
# over the GPUs. They leave out reading the embeddings from disk, which each
# process does once per block of its query rows. The CPU column scales this
# machine's measured time per score cell.

# %% tags=["remove-input"]
display(show(costs.archive_projection(scale), uid="archive-projection",
             caption="The audit of an archive: measured time per score cell here, and a projection for GPUs"))

# %% tags=["remove-cell"]
from relink.paper import footprint
from relink.paper.display import prose
from relink.paper.chapters import chapters

memory = json.loads((REPO_ROOT / "benchmarks" / "results" / "paper_memory.json").read_text())
titles = {c.stem: c.title for c in chapters()}
for key, value in footprint.glue_values(memory, titles).items():
    glue(key, prose(value) if key == "mem_sentence" else value)

# %% [markdown]
# ## The default profile where Binder runs it
#
# A Binder session is usually given about {glue:text}`mem_limit_mib:,d` MiB of
# memory and two cores. `postBuild` builds the default profile while the image
# is built, so that each launch button opens a chapter executed on this book's
# numbers; `relink paper` builds each missing stage and result in a fresh
# process, so a run's peak is its largest step's, not their sum.
# `python tools/paper_memory.py --profile synthetic` measures every step of a
# cold run and every chapter re-run in a fresh kernel with its artifacts
# present, on {glue:text}`mem_cpus:d` cores (table below; the times depend on how busy
# the machine was).
# {glue:md}`mem_sentence`

# %% tags=["remove-input"]
display(show(footprint.table(memory, titles), uid="footprint", formats={"Wall time (s)": ",.0f"},
             caption="The default profile, step by step (each in a fresh process) and chapter by chapter (each "
                     "in a fresh kernel, artifacts present): wall time and peak resident memory"))

# %% tags=["remove-cell"]
from relink.paper.profiles import PROFILES

study_file = REPO_ROOT / "benchmarks" / "results" / "study_run.json"
study = costs.study_run(json.loads(study_file.read_text()) if study_file.is_file() else None)
glue("study_sentence", prose(costs.study_sentence(study, PROFILES["study"])))

# %% [markdown]
# ## The study's own size, measured
#
# The `study` profile runs the same pipeline on the generator at the study's
# sizes (its cohort rows in the claims table match the study by construction).
# `python tools/paper_memory.py --profile study --out benchmarks/results/study_run.json`
# measures it as it measures the default profile, step by step.
# {glue:md}`study_sentence`

# %% tags=["remove-input"]
display(show(costs.side_by_side(memory, study), uid="study-run",
             caption="Each step of a cold run: the default profile beside the study profile (wall time; peak "
                     "resident memory of the largest process)"))

# %% tags=["remove-input"]
if study is not None:
    display(show(costs.study_projection(study, PROFILES["study"], mimic), uid="study-projection",
                 caption="The mimic profile at the study's size, recomputed from the study run's own steps "
                         "(a projection, not a measurement)"))
