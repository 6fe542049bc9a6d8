"""``relink.train_heads``: the attacker who re-trains projection heads, without DP, on public pairs.

The output folder holds ``embeddings/`` (the target re-projected), ``heads.safetensors`` and
``train-heads.json`` (the record): no path, no report text, no identifier beyond the target's own rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..dp.retrain import RetrainSpec
from ..embeddings import EmbeddingSet
from .results import with_trunk

RECORD = "train-heads.json"


@dataclass(frozen=True)
class TrainedHeads:
    """The attacker's heads, the target rows re-projected through them, the settings and notes."""

    embeddings: EmbeddingSet
    heads: Any  # relink.models.heads.Heads
    spec: RetrainSpec
    record: Mapping[str, Any]
    notes: tuple[str, ...] = ()


def train_heads(public: EmbeddingSet | str | os.PathLike, target: EmbeddingSet | str | os.PathLike,
                spec: RetrainSpec | None = None, *, out: str | os.PathLike | None = None,
                progress: bool | None = None) -> TrainedHeads:
    """Train heads on ``public``'s pairs and re-project ``target`` (sets or their folders); write to ``out``,
    claimed by the caller. Refused: a public set sharing a pair or a patient with the target, another trunk."""
    from types import MappingProxyType

    from ..dp.apply import apply_heads, heads_fingerprint
    from ..dp.retrain import retrain_heads
    from ..embeddings import public_meta
    from ..io import json_safe

    spec = spec or RetrainSpec()
    public, target = with_trunk(public), with_trunk(target)
    heads, record = retrain_heads(public, target, spec, progress=progress)
    record = json_safe({**record, "heads_fingerprint": heads_fingerprint(heads), "target_pairs": len(target)})
    meta = public_meta({**target.meta, "heads": {"fingerprint": record["heads_fingerprint"], "attacker": record["attacker"]},
                        "for_release": False, "release_note": record["release_note"]})
    es = apply_heads(target, heads)
    es.meta = meta
    notes = (f"trained on {len(public)} public pairs for {spec.epochs} epochs from a random start (seed {spec.seed})",
             record["release_note"])
    result = TrainedHeads(es, heads, spec, MappingProxyType(record), notes)
    if out is not None:
        write(result, out)
    return result


def write(result: TrainedHeads, out: str | os.PathLike) -> Path:
    """The output folder, atomically: ``embeddings/``, ``heads.safetensors``, ``train-heads.json``."""
    from ..dp.apply import save_heads
    from ..embeddings import save
    from ..io import atomic_dir, mark_output, write_json
    from ..provenance import stamp

    with atomic_dir(out) as tmp:
        save(result.embeddings, tmp / "embeddings")
        save_heads(result.heads, tmp / "heads.safetensors")
        write_json(tmp / RECORD, {**result.record, "provenance": stamp(command="train-heads")})
        mark_output(tmp, "train-heads")
    return Path(out)
