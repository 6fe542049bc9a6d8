"""One decode, several models: stream a cohort's inputs once to every model that takes them.

Why the arrays are byte-identical to one model at a time: each :class:`Task` keeps its own batches
(those a one-model run makes); only the decoded rows are shared. Rows are decoded in increasing order
and a task runs a batch once all its rows are in, so memory holds at most one batch of the sparsest
task. A shard goes to ``write_shard`` as soon as its last batch ran, so a run resumes per shard.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..cohort import Cohort
from ..errors import CohortError, EmbeddingError
from .dataset import PairDataset, batches_per_range, iterate, make_loader, range_batches
from .shards import Shard, EmbedWork

#: ``(work folder, shard, arrays by name, kept row positions, skipped-row records) -> None``
ShardWriter = Callable[[EmbedWork, Shard, dict, np.ndarray, list], None]


@dataclass
class Task:
    """One model embedding a set of cohort rows into one work folder: its own row ``k`` is cohort row
    ``rows[k]`` (increasing); its shards and ``kept`` indices count in its own rows."""

    lm: Any
    rows: np.ndarray
    cohort: Cohort
    work: EmbedWork
    shards: list[Shard]  # the shards this process still has to compute, in order
    names: tuple[str, ...] = ("image", "text", "image_trunk", "text_trunk")
    batches: list[np.ndarray] = field(default_factory=list)  # own positions per batch
    per_shard: list[int] = field(default_factory=list)

    def plan(self, batch_size: int) -> None:
        ranges = [(s.start, s.stop) for s in self.shards]
        self.batches = [np.asarray(b, dtype=np.int64) for b in range_batches(ranges, batch_size)]
        self.per_shard = batches_per_range(ranges, batch_size)


def run_tasks(full: Cohort, tasks: list[Task], batch_size: int, num_workers: int, device: str, amp: bool,
              skip_bad: bool, with_trunk: bool, progress: bool, write_shard: ShardWriter = EmbedWork.write) -> None:
    """Compute every pending shard of ``tasks`` (models sharing one input key), decoding each row once;
    ``write_shard(work, shard, arrays, kept, skipped)`` stores each finished shard."""
    from tqdm.auto import tqdm

    for t in tasks:
        t.plan(batch_size)
    needed = [t.rows[b] for t in tasks for b in t.batches]
    if not needed:
        return
    union = np.unique(np.concatenate(needed))
    uses = np.zeros(len(full), dtype=np.int32)  # batches still waiting for each row
    for rows in needed:
        uses[rows] += 1
    first = tasks[0].lm
    files = [str(full.image_root / p) for p in full.frame["image_path"]]
    dataset = PairDataset(files, full.frame["report"].tolist(), first.preprocess, first.tokenizer, first.preprocess_cfg)
    chunks = [union[i:i + batch_size].tolist() for i in range(0, len(union), batch_size)]
    loader = make_loader(dataset, chunks, num_workers, pin_memory=device.startswith("cuda"))
    held: dict[int, tuple[Any, Any, str]] = {}
    states = [_State(t) for t in tasks]
    bar = tqdm(total=sum(len(b) for t in tasks for b in t.batches), desc="embed", unit="pair",
               disable=None if progress else True)
    decoded = iterate(loader)
    try:
        for chunk in decoded:
            for k, row in enumerate(chunk["index"].tolist()):
                held[row] = (chunk["image"][k], chunk["tokens"][k], chunk["error"][k])
            last = int(chunk["index"][-1])
            for st in states:
                while st.next_ready(last):
                    rows = st.task.rows[st.task.batches[st.b]]
                    batch = _collate(held, rows, st.task.batches[st.b])
                    bar.update(st.run(batch, device, amp, skip_bad, with_trunk, full, write_shard))
                    uses[rows] -= 1
                    for r in rows[uses[rows] == 0].tolist():
                        del held[r]
    finally:
        decoded.close()
        bar.close()
    unfinished = [st.task.work.path for st in states if st.b < len(st.task.batches)]
    if unfinished:  # cannot happen: every needed row was decoded
        raise RuntimeError(f"embedding stopped early for {unfinished[0]}")


def _collate(held: dict[int, tuple[Any, Any, str]], rows: np.ndarray, positions: np.ndarray) -> dict[str, Any]:
    """The batch a one-model DataLoader would have collated for these rows (same tensors, stacked)."""
    import torch

    items = [held[r] for r in rows.tolist()]
    return {"index": torch.from_numpy(positions), "image": torch.stack([it[0] for it in items]),
            "tokens": torch.stack([it[1] for it in items]), "error": [it[2] for it in items]}


class _State:
    """Where one task stands: its next batch, and the parts of the shard it is filling."""

    def __init__(self, task: Task):
        self.task, self.b, self.s, self.in_shard = task, 0, 0, 0
        self._reset()

    def _reset(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {n: [] for n in self.task.names}
        self.kept: list[np.ndarray] = []
        self.skipped: list[dict[str, Any]] = []

    def next_ready(self, last_decoded: int) -> bool:
        t = self.task
        return self.b < len(t.batches) and int(t.rows[t.batches[self.b][-1]]) <= last_decoded

    def run(self, batch: dict[str, Any], device: str, amp: bool, skip_bad: bool, with_trunk: bool, full: Cohort,
            write_shard) -> int:
        t = self.task
        out, keep, bad = embed_batch(t.lm, batch, device, amp, skip_bad, t.cohort, with_trunk, full, t.rows)
        for n in t.names:
            self.parts[n].append(out[n][keep])
        self.kept.append(batch["index"].numpy()[keep])
        self.skipped.extend(bad)
        self.b += 1
        self.in_shard += 1
        if self.in_shard == t.per_shard[self.s]:
            write_shard(t.work, t.shards[self.s], {n: np.concatenate(self.parts[n]) for n in t.names},
                        np.concatenate(self.kept), self.skipped)
            self.s, self.in_shard = self.s + 1, 0
            self._reset()
        return len(keep)


def _row_problem(full: Cohort, row: int, what: str) -> str:
    pair_id = full.frame["pair_id"].iat[row]
    return f"row {row}, pair_id {pair_id!r}, image {full.image_root / full.frame['image_path'].iat[row]}: {what}"


def embed_batch(lm, batch: dict[str, Any], device: str, amp: bool, skip_bad: bool, cohort: Cohort,
                with_trunk: bool = True, full: Cohort | None = None, rows: np.ndarray | None = None):
    """Embed one collated batch with ``lm``: ``(arrays, keep mask, skipped-row records)``.

    ``batch["index"]`` holds positions in ``cohort``; messages name the row of ``full``, ``rows[position]``.
    Projections are L2-normalised in float32; trunks are stored as computed.
    """
    import torch
    import torch.nn.functional as F

    from ..models.preprocess import normalise
    from ..models.trunks import encode_trunks_and_heads

    full = cohort if full is None else full
    index = batch["index"].tolist()
    where = [int(rows[i]) if rows is not None else i for i in index]
    bad_pos = [j for j, e in enumerate(batch["error"]) if e]
    if bad_pos and not skip_bad:
        j = bad_pos[0]
        raise CohortError(_row_problem(full, where[j], f"cannot read image ({batch['error'][j]}); "
                                       "fix or remove the row, or pass --skip-bad to leave bad rows out"))
    cfg = lm.preprocess_cfg or {}
    images = normalise(batch["image"].to(device, non_blocking=True), cfg.get("mean", (0.0,) * 3),
                       cfg.get("std", (1.0,) * 3))  # uint8 travels; normalised here
    tokens = batch["tokens"].to(device, non_blocking=True)
    ctx = torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        if with_trunk:
            img_trunk, img_proj, txt_trunk, txt_proj = encode_trunks_and_heads(lm.model, images, tokens)
        else:  # any open_clip model, also those without a separable head
            img_proj, txt_proj = lm.model.encode_image(images), lm.model.encode_text(tokens)
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
        raise EmbeddingError(_row_problem(full, where[j], f"the model gave a non-finite embedding{hint}"))
    frame = cohort.frame
    skipped = [{"row": index[j], "pair_id": frame["pair_id"].iat[index[j]],
                "image_path": frame["image_path"].iat[index[j]], "error": batch["error"][j]} for j in bad_pos]
    return out, keep, skipped
