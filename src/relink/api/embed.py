"""``relink.embed``: a cohort into EmbeddingSet folders, one per model (resumable, cached, sharded).

``on_note`` receives each note as it happens as well: a long run says at once that it resumes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..options import Range, check_spec, one_of, option

PRECISIONS = ("auto", "fp32", "amp")


@dataclass(frozen=True)
class EmbedSpec:
    """How rows are embedded (every default here, once)."""

    batch_size: int = option(256, flag="--batch-size", check=Range(int, 1, 1 << 16), help="pairs per forward pass")
    workers: int | None = option(None, flag="--workers", check=Range(int, 0, 256),
                                 help="DataLoader workers per process (default: on a GPU the cores left after the "
                                      "model's, at most 8; on the CPU none up to 2 cores per process, else a quarter "
                                      "of them)")
    shard_size: int = option(4096, flag="--shard-size", check=Range(int, 1, 10_000_000), help="rows per resumable shard")
    device: str = option("auto", flag="--device", help="auto (the GPU if there is one), cpu, cuda, cuda:1, ...")
    precision: str = option("auto", flag="--precision", parse=one_of(PRECISIONS), choices=PRECISIONS,
                            help="auto: mixed precision on a GPU, fp32 on the CPU")
    skip_bad: bool = option(False, flag="--skip-bad",
                            help="leave out rows whose image cannot be read (counted in meta.json)")
    with_trunk: bool = option(True, flag="--no-trunk",
                              help="do not store pre-projection features (the DP step needs them)")

    def __post_init__(self) -> None:
        check_spec(self)


@dataclass(frozen=True)
class Embedded:
    """The EmbeddingSet folders (in job order), the settings used, and the notes."""

    outputs: tuple[Path, ...]
    spec: EmbedSpec
    notes: tuple[str, ...] = ()


def embed(cohort, models, out: str | os.PathLike | None = None, spec: EmbedSpec | None = None, *,
          overwrite: bool = False, progress: bool = True, comm=None,
          on_note: Callable[[str], None] | None = None) -> Embedded:
    """Embed ``cohort`` with one model into ``out``, or with a list of jobs (:func:`relink.embed.embed_many`)."""
    from ..embed import EmbedJob, embed_many
    from ..errors import RelinkError

    spec = spec or EmbedSpec()
    if out is not None:
        jobs: Sequence[Any] = [EmbedJob(models, out)]
    elif isinstance(models, (list, tuple)):
        jobs = models
    else:
        raise RelinkError("give an output folder for the model (or a list of jobs, each with its folder)")
    notes: list[str] = []

    def note(text: str) -> None:
        notes.append(text)
        if on_note is not None:
            on_note(text)

    outs = embed_many(cohort, jobs, batch_size=spec.batch_size, num_workers=spec.workers, shard_size=spec.shard_size,
                      device=spec.device, skip_bad=spec.skip_bad, with_trunk=spec.with_trunk, progress=progress,
                      precision=spec.precision, overwrite=overwrite, comm=comm, note=note)
    return Embedded(tuple(outs), spec, tuple(notes))
