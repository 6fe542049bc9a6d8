"""Embedding cohorts into EmbeddingSet folders (:mod:`relink.embeddings`): ``relink embed``.

An output that already holds what is asked is reused; otherwise rows are embedded shard by shard into
the keyed work folder ``OUT.work`` and merged into ``OUT`` at once. Batches never cross shards, so a
resumed run is byte-identical to an uninterrupted one; a run failing on bad input removes the work
folder it created, an interrupted one keeps it. Under ``torchrun`` each rank embeds its shards and
rank 0 merges them in row order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from .. import __version__
from ..cohort import Cohort, fingerprint, read_cohort, refuse_output_over_cohort
from ..embeddings import FORMAT_VERSION
from ..errors import EmbeddingError, RelinkError
from ..io import claim_output
from ..models.device import resolve_device
from ..options import number
from ..provenance import package_versions
from .dataset import default_workers
from .distributed import OtherRankFailed, sync
from .merge import OWNER, merge_shards, reuse_reason, say
from .shards import EmbedWork, plan_shards, shards_for_rank, work_path
from .fanout import ShardWriter, Task, run_tasks

DEFAULT_SHARD_SIZE = 4096


class Comm(Protocol):
    """What the loop needs from a process group (``None`` = one process)."""

    rank: int
    world_size: int

    def barrier(self) -> None: ...

    def gather_errors(self, error: tuple[str, bool] | None) -> list[tuple[str, bool]]: ...


@dataclass
class EmbedJob:
    """One model and the folder it writes; ``rows`` (a boolean mask or increasing row positions of the
    cohort) restricts it to a subset: the output is then exactly the EmbeddingSet of that subset."""

    model: Any  # a spec string or a relink.models.LoadedModel
    out_dir: str | os.PathLike
    rows: Any = None


def load_for_embedding(spec: str, device: str = "cpu"):
    """:func:`relink.models.load_model`, with a random initialisation seeded (every process and run
    builds the same model, so the weights fingerprint, the cache key, is stable)."""
    import torch

    from ..models import load_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return load_model(spec, device=device)


def embed_cohort(cohort, model, out_dir, batch_size: int = 256, num_workers: int | None = None,
                 shard_size: int | None = None, device: str = "auto", skip_bad: bool = False,
                 with_trunk: bool = True, progress: bool = True, precision: str = "auto",
                 overwrite: bool = False, comm: Comm | None = None, write_shard: ShardWriter = EmbedWork.write,
                 note: Callable[[str], None] = say) -> Path:
    """Embed every row of ``cohort`` with ``model`` (a spec or a ``LoadedModel``) into the EmbeddingSet
    folder ``out_dir``.

    ``precision``: ``auto`` (mixed precision on a GPU), ``fp32`` or ``amp``. With ``skip_bad`` unreadable
    images are left out and listed in ``meta.json``. ``write_shard`` stores each finished shard; ``note``
    receives what a user should know (a reused set, a resumed work folder, rows left out).
    """
    return embed_many(cohort, [EmbedJob(model, out_dir)], batch_size=batch_size, num_workers=num_workers,
                      shard_size=shard_size, device=device, skip_bad=skip_bad, with_trunk=with_trunk,
                      progress=progress, precision=precision, overwrite=overwrite, comm=comm,
                      write_shard=write_shard, note=note)[0]


def embed_many(cohort, jobs: Sequence[EmbedJob | tuple], batch_size: int = 256, num_workers: int | None = None,
               shard_size: int | None = None, device: str = "auto", skip_bad: bool = False,
               with_trunk: bool = True, progress: bool = True, precision: str = "auto",
               overwrite: bool = False, comm: Comm | None = None,
               write_shard: ShardWriter = EmbedWork.write, note: Callable[[str], None] = say) -> list[Path]:
    """Embed ``cohort`` with every job's model into its folder; one decode per row for models with equal
    inputs. Each output is byte-identical to :func:`embed_cohort` of the job's rows."""
    rank, world = (comm.rank, comm.world_size) if comm is not None else (0, 1)
    jobs = [j if isinstance(j, EmbedJob) else EmbedJob(*j) for j in jobs]
    batch_size = number("--batch-size", batch_size, int, 1)
    shard_size = DEFAULT_SHARD_SIZE if shard_size is None else number("--shard-size", shard_size, int, 1)
    if num_workers is not None:
        num_workers = number("--workers", num_workers, int, 0)
    outs = [Path(j.out_dir) for j in jobs]
    if len({o.resolve() for o in outs}) < len(outs):
        raise RelinkError("two models would write the same --out folder")
    failure = None
    if rank == 0:  # first, before any expensive work: refuse a foreign --out, clean a killed run's leftovers
        try:
            for out in outs:
                claim_output(out, kind="dir", owner=OWNER, overwrite=overwrite)
        except RelinkError as exc:
            failure = exc
    sync(comm, failure)
    try:  # every rank reads the cohort and loads the models; a failure on one must stop all
        full = cohort if isinstance(cohort, Cohort) else read_cohort(cohort)
        dev = resolve_device(device)
        amp = {"auto": dev.startswith("cuda"), "fp32": False, "amp": True}.get(precision)
        if amp is None:
            raise RelinkError(f"--precision {precision!r}: choose auto, fp32 or amp")
        if amp and not dev.startswith("cuda"):
            raise RelinkError("--precision amp needs a CUDA device (on the CPU fp32 is used)")
        for out in outs:
            refuse_output_over_cohort(out, full)
        settings = {"shard_size": shard_size, "batch_size": batch_size, "precision": "amp" if amp else "fp32",
                    "with_trunk": with_trunk}
        plans = [_plan(full, job, out, dev, settings, skip_bad, rank, note) for job, out in zip(jobs, outs)]
    except Exception as exc:  # noqa: BLE001 - re-raised by _sync on this rank
        failure = exc
    sync(comm, failure)
    pending = [p for p in plans if p is not None]
    created: list[EmbedWork] = []
    failure = None
    if rank == 0:
        try:
            for p in pending:
                state = p["work"].prepare()
                if state != "resume":
                    created.append(p["work"])
                if state == "stale":
                    note(f"{p['work'].path} belonged to another model, cohort or setting; started afresh")
                done = sum(p["work"].is_done(s) for s in p["shards"])
                if done:
                    note(f"resuming {p['out']}: {done} shard(s) already done in {p['work'].path}")
        except Exception as exc:  # noqa: BLE001 - every rank must learn of it
            failure = exc
    sync(comm, failure)
    workers = default_workers(world, dev) if num_workers is None else num_workers
    try:
        _compute(full, pending, rank, world, batch_size, workers, dev, amp, skip_bad, with_trunk, progress and rank == 0,
                 comm, write_shard)
        failure = None
        if rank == 0:
            try:
                for p in pending:
                    skipped = merge_shards(p["work"], p["shards"], p["cohort"], p["out"], {
                        "model": p["lm"].spec, **p["key"], "relink_version": __version__,
                        "packages": package_versions(("torch", "open_clip_torch"))})
                    p["work"].remove()
                    if skipped:
                        note(f"skipped {skipped} unreadable image(s) (listed in {p['out'] / 'meta.json'})")
            except Exception as exc:  # noqa: BLE001 - every rank must learn of it
                failure = exc
        sync(comm, failure)
    except RelinkError as exc:  # bad input: remove the work folders this run created (an interrupt keeps them)
        if rank == 0 and not isinstance(exc, OtherRankFailed):
            for work in created:
                work.remove()
        raise
    return outs


def _plan(full: Cohort, job: EmbedJob, out: Path, dev: str, settings: dict[str, Any], skip_bad: bool,
          rank: int, note: Callable[[str], None]) -> dict[str, Any] | None:
    """Load the job's model and decide: reuse the existing output (``None``) or compute (the plan)."""
    rows = _job_rows(full, job.rows, out)
    sub = full if len(rows) == len(full) else Cohort(full.frame.iloc[rows].reset_index(drop=True), full.image_root,
                                                      full.manifest)
    if len(sub) == 0:
        raise EmbeddingError(f"{full.manifest}: the cohort has no rows to embed"
                             + (f" into {out} (its rows select none)" if job.rows is not None else ""))
    lm = load_for_embedding(job.model, dev) if isinstance(job.model, str) else job.model
    lm.model.to(dev).eval()
    preprocess = {k: (list(v) if isinstance(v, tuple) else v) for k, v in (lm.preprocess_cfg or {}).items()}
    meta = {"weights_fingerprint": lm.fingerprint, "cohort_fingerprint": fingerprint(sub),
            "preprocess": preprocess, "context_length": getattr(lm.tokenizer, "context_length", None)}
    if out.is_dir() and any(out.iterdir()):
        why = reuse_reason(out, meta, settings["with_trunk"], skip_bad)
        if why is None:
            if rank == 0:
                note(f"reusing {out} (weights {meta['weights_fingerprint']} and cohort {meta['cohort_fingerprint']} match)")
            return None
        if rank == 0:
            note(f"cache miss for {out}: {why}; recomputing")
    key = {**meta, "format_version": FORMAT_VERSION, "n_rows": len(sub), **settings}
    return {"lm": lm, "rows": rows, "cohort": sub, "out": out, "key": key, "work": EmbedWork(work_path(out), key),
            "shards": plan_shards(len(sub), settings["shard_size"])}


def _job_rows(full: Cohort, rows: Any, out: Path) -> np.ndarray:
    if rows is None:
        return np.arange(len(full), dtype=np.int64)
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (len(full),):
            raise RelinkError(f"rows for {out}: a mask of {len(full)} values is needed, got shape {rows.shape}")
        return np.flatnonzero(rows).astype(np.int64)
    rows = rows.astype(np.int64)
    if rows.ndim != 1 or (len(rows) and (rows[0] < 0 or rows[-1] >= len(full) or np.any(np.diff(rows) <= 0))):
        raise RelinkError(f"rows for {out}: give increasing row positions in 0..{len(full) - 1}")
    return rows


def _compute(full: Cohort, pending: list[dict[str, Any]], rank: int, world: int, batch_size: int, workers: int,
             dev: str, amp: bool, skip_bad: bool, with_trunk: bool, progress: bool, comm: Comm | None,
             write_shard: ShardWriter) -> None:
    """Every rank computes its shards of every pending job, one decoding pass per group of equal inputs."""
    from ..models.preprocess import input_key

    groups: dict[str, list[Task]] = {}
    for p in pending:
        todo = [s for s in shards_for_rank(p["shards"], rank, world) if not p["work"].is_done(s)]
        if not todo:
            continue
        names = ("image", "text", "image_trunk", "text_trunk") if with_trunk else ("image", "text")
        task = Task(p["lm"], p["rows"], p["cohort"], p["work"], todo, names)
        groups.setdefault(input_key(p["lm"].preprocess, p["lm"].preprocess_cfg, p["lm"].tokenizer), []).append(task)
    failure = None
    try:
        for tasks in groups.values():
            run_tasks(full, tasks, batch_size, workers, dev, amp, skip_bad, with_trunk, progress, write_shard)
    except Exception as exc:  # every rank must learn of it, or the others wait at the merge forever
        failure = exc
    sync(comm, failure)

