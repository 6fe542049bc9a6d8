"""The finished EmbeddingSet: when an existing one can be reused, and merging shards into a new one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..cohort import Cohort
from ..embeddings import ROW_COLUMNS
from ..errors import EmbeddingError
from ..io import atomic_dir, mark_output, write_json
from .shards import Shard, EmbedWork

OWNER = "embed"  # the owner name relink.io.claim_output / mark_output know embedding sets by
MAX_SKIPPED_LISTED = 1000  # meta.json lists at most this many skipped rows (the count is always exact)


def say(msg: str) -> None:
    print(f"relink embed: {msg}", file=sys.stderr, flush=True)


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


def merge_shards(work: EmbedWork, shards: list[Shard], cohort: Cohort, out_dir: Path, meta: dict[str, Any]) -> int:
    """Concatenate finished shards in row order into the EmbeddingSet folder ``out_dir`` (atomically); returns
    how many unreadable rows were left out (listed in its ``meta.json``)."""
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
        mark_output(tmp, OWNER)
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
    return len(skipped)
