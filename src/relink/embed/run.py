"""The embedding loop: a cohort and a model to an EmbeddingSet folder (:mod:`relink.embeddings`).

``embed_cohort`` is resumable and cache-aware:

* an existing output whose ``meta.json`` names the same weights fingerprint,
  cohort fingerprint, preprocessing and tokenizer context is reused at once
  (a set with skipped rows only under ``skip_bad``; one without trunks only
  when trunks are not asked for);
* otherwise rows are embedded shard by shard into the work folder
  ``OUT.work`` (:mod:`relink.embed.shards`); an interrupted run resumes
  there, and the merged result is byte-identical to an uninterrupted run
  (batches never cross shards, so each shard's numbers do not depend on what
  else ran);
* the output folder appears at once (written under a temporary name and
  renamed), then the work folder is removed.

Under ``torchrun`` (see :mod:`relink.embed.distributed`) each rank embeds its
shards, and rank 0 merges them in row order after all ranks are done.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import __version__
from ..cohort import Cohort, fingerprint, read_cohort
from ..embeddings import FORMAT_VERSION, ROW_COLUMNS
from ..errors import CohortError, EmbeddingError, RelinkError
from ..io import atomic_dir, write_json
from ..provenance import package_versions
from .dataset import PairDataset, batches_per_range, default_workers, iterate, make_loader, range_batches
from .shards import Shard, WorkDir, plan_shards, shards_for_rank, work_path

DEFAULT_SHARD_SIZE = 4096
MAX_SKIPPED_LISTED = 1000  # meta.json lists at most this many skipped rows (the count is always exact)


class Comm(Protocol):
    """What the loop needs from a process group (``None`` = one process)."""

    rank: int
    world_size: int

    def barrier(self) -> None: ...

    def gather_errors(self, error: str | None) -> list[str]: ...


def say(msg: str) -> None:
    print(f"relink embed: {msg}", file=sys.stderr, flush=True)


def resolve_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RelinkError(f"--device {device}: no CUDA device is available")
        return device
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"


def load_for_embedding(spec: str, device: str = "cpu"):
    """:func:`relink.models.load_model`, with randomly initialised names made deterministic.

    A bare architecture name (``relink-vit-tiny``) has random weights; seeding
    their initialisation makes every process and every run build the same
    model, so the weights fingerprint (the cache key) is stable.
    """
    import torch

    from ..models import load_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return load_model(spec, device=device)


def _context_length(lm) -> int | None:
    return getattr(lm.tokenizer, "context_length", None)


def _preprocess(lm) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in (lm.preprocess_cfg or {}).items()}


def reuse_reason(out_dir: Path, meta: dict[str, Any], with_trunk: bool, skip_bad: bool) -> str | None:
    """``None`` when ``out_dir`` can be reused for ``meta``; otherwise why not (for the message)."""
    import json

    try:
        old = json.loads((out_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return "no readable meta.json"
    for key, what in (("weights_fingerprint", "model weights"), ("cohort_fingerprint", "cohort"),
                      ("preprocess", "preprocessing"), ("context_length", "tokenizer context")):
        if old.get(key) != meta.get(key):
            return f"{what} changed"
    needed = ["image", "text"] + (["image_trunk", "text_trunk"] if with_trunk else [])
    missing = [n for n in needed + ["rows"] if not (out_dir / (f"{n}.npy" if n != "rows" else "rows.parquet")).is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    if old.get("n_skipped", 0) and not skip_bad:
        return f"it skipped {old['n_skipped']} unreadable row(s) and --skip-bad is not set"
    return None


def embed_cohort(cohort, model, out_dir, batch_size: int = 256, num_workers: int | None = None,
                 shard_size: int | None = None, device: str = "auto", skip_bad: bool = False,
                 with_trunk: bool = True, progress: bool = True, precision: str = "auto",
                 comm: Comm | None = None) -> Path:
    """Embed every row of ``cohort`` with ``model`` into the EmbeddingSet folder ``out_dir``.

    ``cohort``: a :class:`relink.cohort.Cohort` or a cohort folder / manifest.
    ``model``: a spec string (:mod:`relink.models.registry`) or a ``LoadedModel``
    (moved to ``device``). ``precision``: ``auto`` (mixed precision on a GPU,
    fp32 on the CPU), ``fp32`` or ``amp``. An unreadable image raises a
    :class:`CohortError` naming its row, pair_id and file (nothing is written
    to ``out_dir``); with ``skip_bad`` such rows are left out, counted and
    listed in ``meta.json``. ``comm`` is set by :mod:`relink.embed.distributed`.
    Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    rank, world = (comm.rank, comm.world_size) if comm is not None else (0, 1)
    for option, value, low in (("--batch-size", batch_size, 1), ("--shard-size", shard_size, 1), ("--workers", num_workers, 0)):
        if value is not None and value < low:
            raise RelinkError(f"{option} must be >= {low}, got {value}")
    cohort = cohort if isinstance(cohort, Cohort) else read_cohort(cohort)
    dev = resolve_device(device)
    lm = load_for_embedding(model, dev) if isinstance(model, str) else model
    lm.model.to(dev).eval()
    amp = {"auto": dev.startswith("cuda"), "fp32": False, "amp": True}.get(precision)
    if amp is None:
        raise RelinkError(f"--precision {precision!r}: choose auto, fp32 or amp")
    if amp and not dev.startswith("cuda"):
        raise RelinkError("--precision amp needs a CUDA device (on the CPU fp32 is used)")
    meta = {
        "weights_fingerprint": lm.fingerprint, "cohort_fingerprint": fingerprint(cohort),
        "preprocess": _preprocess(lm), "context_length": _context_length(lm),
    }
    if len(cohort) == 0:
        raise EmbeddingError(f"{cohort.manifest}: the cohort has no rows to embed")
    if out_dir.exists():
        if not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / "meta.json").is_file()):
            raise EmbeddingError(f"{out_dir} exists and is not an embedding set; choose another --out")
        why = reuse_reason(out_dir, meta, with_trunk, skip_bad)
        if why is None:
            if rank == 0:
                say(f"reusing {out_dir} (weights {meta['weights_fingerprint']} and cohort {meta['cohort_fingerprint']} match)")
            return out_dir
        if rank == 0:
            say(f"cache miss for {out_dir}: {why}; recomputing")
    shard_size = shard_size or DEFAULT_SHARD_SIZE
    key = {**meta, "format_version": FORMAT_VERSION, "n_rows": len(cohort), "shard_size": shard_size,
           "batch_size": batch_size, "precision": "amp" if amp else "fp32", "with_trunk": with_trunk}
    work = WorkDir(work_path(out_dir), key)
    if rank == 0:
        state = work.prepare()
        if state == "stale":
            say(f"{work.path} belonged to another model, cohort or setting; started afresh")
    if comm is not None:
        comm.barrier()
    shards = plan_shards(len(cohort), shard_size)
    todo = [s for s in shards_for_rank(shards, rank, world) if not work.is_done(s)]
    done_before = len(shards_for_rank(shards, rank, world)) - len(todo)
    if done_before and rank == 0:
        say(f"resuming: {done_before} shard(s) already done in {work.path}")
    failure = None
    try:
        _run_shards(lm, cohort, work, todo, batch_size,
                    default_workers(world, dev) if num_workers is None else num_workers,
                    dev, amp, skip_bad, with_trunk, progress and rank == 0)
    except Exception as exc:  # every rank must learn of it, or the others wait at the merge forever
        failure = exc
    _sync(comm, failure)
    if rank == 0:
        try:
            merge_shards(work, shards, cohort, out_dir, {"model": lm.spec, **key, "relink_version": __version__,
                                                         "packages": package_versions(("torch", "open_clip_torch"))})
            work.remove()
        except Exception as exc:
            failure = exc
    _sync(comm, failure)
    return out_dir


def _sync(comm: Comm | None, failure: Exception | None) -> None:
    """Meet the other ranks (a barrier); raise this rank's failure, or the first other rank's."""
    errors = comm.gather_errors(None if failure is None else str(failure)) if comm is not None else []
    if failure is not None:
        raise failure
    if errors:
        raise RelinkError(errors[0])


def _write_shard(work: WorkDir, shard: Shard, arrays, kept, skipped) -> None:
    work.write(shard, arrays, kept, skipped)


def _run_shards(lm, cohort: Cohort, work: WorkDir, shards: list[Shard], batch_size: int, num_workers: int,
                device: str, amp: bool, skip_bad: bool, with_trunk: bool, progress: bool) -> None:
    if not shards:
        return
    from tqdm.auto import tqdm

    ranges = [(s.start, s.stop) for s in shards]
    files = [str(cohort.image_root / p) for p in cohort.frame["image_path"]]
    dataset = PairDataset(files, cohort.frame["report"].tolist(), lm.preprocess, lm.tokenizer, lm.preprocess_cfg)
    loader = make_loader(dataset, range_batches(ranges, batch_size), num_workers, pin_memory=device.startswith("cuda"))
    names = ("image", "text", "image_trunk", "text_trunk") if with_trunk else ("image", "text")
    bar = tqdm(total=sum(len(s) for s in shards), desc="embed", unit="pair", disable=None if progress else True)
    batches = iterate(loader)
    n_skipped = 0
    try:
        for shard, n_batches in zip(shards, batches_per_range(ranges, batch_size)):
            parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
            kept: list[np.ndarray] = []
            skipped: list[dict[str, Any]] = []
            for _ in range(n_batches):
                batch = next(batches)
                out, keep, bad = embed_batch(lm.model, batch, dataset.model_input, device, amp, skip_bad, cohort,
                                             with_trunk)
                for n in names:
                    parts[n].append(out[n][keep])
                kept.append(batch["index"].numpy()[keep])
                skipped.extend(bad)
                bar.update(len(keep))
            _write_shard(work, shard, {n: np.concatenate(parts[n]) for n in names}, np.concatenate(kept), skipped)
            if skipped:
                n_skipped += len(skipped)
                bar.set_postfix(skipped=n_skipped)
    finally:
        batches.close()
        bar.close()


def _row_problem(cohort: Cohort, i: int, what: str) -> str:
    pair_id = cohort.frame["pair_id"].iat[i]
    return f"row {i}, pair_id {pair_id!r}, image {cohort.image_root / cohort.frame['image_path'].iat[i]}: {what}"


def embed_batch(model, batch: dict[str, Any], prepare, device: str, amp: bool, skip_bad: bool, cohort: Cohort,
                with_trunk: bool = True):
    """Embed one collated batch: ``(arrays, keep mask, skipped-row records)``.

    ``prepare`` turns the collated images into the model's input
    (:meth:`PairDataset.model_input`).

    Projections are L2-normalised in float32; trunks (with ``with_trunk``) are
    stored as computed, via :func:`relink.models.trunks.encode_trunks_and_heads`.
    """
    import torch
    import torch.nn.functional as F

    from ..models.trunks import encode_trunks_and_heads

    index = batch["index"].tolist()
    bad_pos = [j for j, e in enumerate(batch["error"]) if e]
    if bad_pos and not skip_bad:
        j = bad_pos[0]
        raise CohortError(_row_problem(cohort, index[j], f"cannot read image ({batch['error'][j]}); "
                                       "fix or remove the row, or pass --skip-bad to leave bad rows out"))
    images = prepare(batch["image"].to(device, non_blocking=True))  # uint8 travels; normalised here
    tokens = batch["tokens"].to(device, non_blocking=True)
    ctx = torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        if with_trunk:
            img_trunk, img_proj, txt_trunk, txt_proj = encode_trunks_and_heads(model, images, tokens)
        else:  # any open_clip model, also those without a separable head
            img_proj, txt_proj = model.encode_image(images), model.encode_text(tokens)
    out = {
        "image": F.normalize(img_proj.float(), dim=-1).cpu().numpy(),
        "text": F.normalize(txt_proj.float(), dim=-1).cpu().numpy(),
    }
    if with_trunk:
        out["image_trunk"] = img_trunk.float().cpu().numpy()
        out["text_trunk"] = txt_trunk.float().cpu().numpy()
    keep = np.ones(len(index), dtype=bool)
    keep[bad_pos] = False
    finite = np.isfinite(out["image"]).all(1) & np.isfinite(out["text"]).all(1)
    if not finite[keep].all():
        j = int(np.flatnonzero(~finite & keep)[0])
        hint = "; try --precision fp32" if amp else ""
        raise EmbeddingError(_row_problem(cohort, index[j], f"the model gave a non-finite embedding{hint}"))
    frame = cohort.frame
    skipped = [{"row": index[j], "pair_id": frame["pair_id"].iat[index[j]],
                "image_path": frame["image_path"].iat[index[j]], "error": batch["error"][j]} for j in bad_pos]
    return out, keep, skipped


def merge_shards(work: WorkDir, shards: list[Shard], cohort: Cohort, out_dir: Path, meta: dict[str, Any]) -> Path:
    """Concatenate finished shards in row order into the EmbeddingSet folder ``out_dir`` (atomically)."""
    missing = [s.name for s in shards if not work.is_done(s)]
    if missing:
        raise EmbeddingError(f"{work.path}: shard(s) {', '.join(missing[:3])} not finished; run again to resume")
    kept = np.concatenate([work.kept(s) for s in shards]) if shards else np.zeros(0, dtype=np.int64)
    skipped = [r for s in shards for r in work.skipped(s)]
    if len(kept) == 0:
        raise EmbeddingError(f"nothing to write to {out_dir}: every row was skipped ({len(skipped)} unreadable)")
    names = ("image", "text", "image_trunk", "text_trunk") if meta["with_trunk"] else ("image", "text")
    rows = cohort.frame.iloc[kept].loc[:, list(ROW_COLUMNS)].reset_index(drop=True)
    dims = {}
    with atomic_dir(out_dir) as tmp:
        rows.to_parquet(tmp / "rows.parquet", index=False)
        for name in names:
            dims[name] = int(work.read_array(shards[0], name).shape[1])
            # Stream shard by shard: the merged arrays of a full cohort need not fit in memory.
            merged = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=np.float32, shape=(len(kept), dims[name]))
            pos = 0
            for s in shards:
                part = work.read_array(s, name)
                merged[pos:pos + len(part)] = part
                pos += len(part)
            merged.flush()
            del merged
        write_json(tmp / "meta.json", {
            **meta, "n_rows": int(len(kept)), "n_rows_cohort": len(cohort), "n_skipped": len(skipped),
            "skipped": skipped[:MAX_SKIPPED_LISTED], "dims": dims,
        })
    if skipped:
        say(f"skipped {len(skipped)} unreadable image(s) (listed in {out_dir / 'meta.json'})")
    return out_dir
