"""``relink.audit``: the re-linkage audit of an EmbeddingSet in one call, and ``relink audit``'s whole run.

The work folder of a resumable run is kept on an interrupt and removed on bad input and when the counts
are done. :func:`audit_to_files`: claim the outputs, join a process group, audit, write.

    >>> relink.audit("runs/emb/ladder-3", AuditSpec(pools=(100, "full"))).table
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..embeddings import EmbeddingSet, public_meta, public_model_name
from ..errors import RelinkError
from ..retrieval.scale import Scale
from ..retrieval.spec import AuditSpec


@dataclass(frozen=True)
class AuditResult:
    """``table``: the metric table (``None`` on every process but the first); ``curve``: the threshold
    attacker's precision-recall curve (``None`` unless ``spec.confident``); ``settings``: the table's
    provenance; ``meta``: the set's ``meta.json`` without local paths; ``values``: the per-query
    :class:`relink.retrieval.values.QueryValues`, for subsets and paired contrasts."""

    table: pd.DataFrame | None
    curve: pd.DataFrame | None
    settings: dict[str, Any]
    notes: tuple[str, ...]
    meta: dict[str, Any]
    values: Any = field(default=None, repr=False)


def _budget(scale: Scale) -> Scale:
    """The default budget: half of the memory available, shared by the processes of this machine."""
    if scale.memory is not None:
        return scale
    from ..retrieval.memory import default_memory

    local = int(os.environ.get("LOCAL_WORLD_SIZE", scale.world))
    return replace(scale, memory=default_memory() // max(1, local))


def _load(embeddings: str | os.PathLike, spec: AuditSpec, rank: int) -> EmbeddingSet:
    """The set, validated as it loads (values on rank 0, shapes elsewhere), with only the columns the audit
    reads (ids and report fields are most of the row table's memory)."""
    from .. import embeddings as sets
    from ..labels import CHEXPERT_LABELS

    es = sets.load(embeddings, check_values=rank == 0)
    keep = ["patient_id", "cohort", "split"] + (list(CHEXPERT_LABELS) if spec.hard else [])
    es.rows = es.rows.loc[:, [c for c in keep if c in es.rows.columns]]
    return es


def audit(embeddings: EmbeddingSet | str | os.PathLike, spec: AuditSpec | None = None, scale: Scale | None = None,
          *, split: str | None = None, model: str | None = None, cohort: str | None = None) -> AuditResult:
    """Audit ``embeddings`` (a folder or a validated set) at ``scale`` (never a number of the table).

    ``split``: audit only that split's rows; ``model``/``cohort``: the table's columns (default: the set's
    model spec without local paths, the rows' cohort names).
    """
    from ..embed.distributed import OtherRankFailed, sync
    from ..retrieval.audit import audit_queries, summarise
    from ..retrieval.summary import confident_curve
    from ..retrieval.work import AuditWork

    spec = spec or AuditSpec()
    scale = _budget(scale or Scale())
    rank = scale.rank
    failure = None
    es, rows = None, None
    try:
        es = _load(embeddings, spec, rank) if not isinstance(embeddings, EmbeddingSet) else embeddings
        rows = es.split_mask(split) if split is not None else None
    except Exception as exc:  # noqa: BLE001 - every rank must learn of it
        failure = exc
    sync(scale.comm, failure)
    before = AuditWork(scale.work, {}).stored_key() if scale.work is not None else None
    existed = scale.work is not None and scale.work.exists()
    try:
        qv = audit_queries(es, spec, rows=rows, scale=scale)
    except RelinkError as exc:
        # bad input: no work folder of this run left behind; one kept by an interrupted run stays
        if rank == 0 and scale.work is not None and not isinstance(exc, OtherRankFailed):
            if not existed or AuditWork(scale.work, {}).stored_key() != before:
                AuditWork(scale.work, {}).remove()
        raise
    notes = []
    if rank == 0 and scale.work is not None:
        if qv.run.get("work_state") == "stale":
            notes.append(f"{scale.work} belonged to another audit (other rows, options or embeddings); started afresh")
        if qv.run.get("finished_before"):
            notes.append(f"resumed: {qv.run['finished_before']} finished block(s) of query rows taken from "
                         f"{scale.work}")
    if rank != 0:
        return AuditResult(None, None, dict(qv.settings), tuple(notes), public_meta(es.meta), qv)
    if model is None:  # never a local path: see relink.embeddings.public_model_name
        model = public_model_name(es.meta.get("model"), es.meta.get("weights_fingerprint"))
    frame_rows = es.rows if rows is None else es.rows[rows]
    if cohort is None:  # the one cohort-name rule, applied to the rows audited
        cohort = EmbeddingSet(frame_rows, None, None).cohort_name
    table = summarise(qv, model=model, cohort=cohort)
    curve = confident_curve(qv) if spec.confident else None
    if scale.work is not None:
        AuditWork(scale.work, {}).remove()  # the counts are done: a re-run has nothing to resume
    settings = table.attrs.get("audit", {})
    n = settings.get("n_pairs", len(frame_rows))
    if settings.get("pools_dropped"):
        dropped = ", ".join(f"{int(v):,}" for v in settings["pools_dropped"])
        notes.append(f"pools larger than the {n:,} candidates were left out (--pools-clip): {dropped}")
    if spec.hard and settings.get("unlabelled_rows"):
        notes.append(f"{settings['unlabelled_rows']:,} row(s) carry no label; they are audited with random pools "
                     "only (never covered by a matched pool)")
    return AuditResult(table, curve, settings, tuple(notes), public_meta(es.meta), qv)


@dataclass(frozen=True)
class AuditFiles:
    """Where ``relink audit`` writes: ``table`` (.csv, .parquet, .json), optionally the threshold attacker's
    ``curve`` (needs ``spec.confident``); ``overwrite``: replace an existing output that is not an audit table."""

    table: Path
    curve: Path | None = None
    overwrite: bool = False


def audit_to_files(embeddings: str | os.PathLike, spec: AuditSpec | dict[str, Any], files: AuditFiles, *,
                   memory: str | None = None,
                   distributed: bool = False, timeout: float = 600.0, split: str | None = None,
                   model: str | None = None, cohort: str | None = None) -> AuditResult | None:
    """``relink audit``: claim the outputs, audit ``embeddings``, write the table (and curve) with provenance.

    ``spec``: an :class:`AuditSpec` or its command-line fields (checked once every process has joined);
    ``memory``: the budget as typed (``"2G"``), counted from now; ``distributed``: one process of a
    torchrun launch. Returns the result on the first process, None on the others. Bad input raises one
    :class:`RelinkError` on the first process; the others exit with status 2 and say nothing.
    """
    from .. import provenance
    from ..embed.distributed import sync
    from ..guard import claim
    from ..io import writing
    # the audit's own modules, loaded before the baseline (retrieval.memory sits below them)
    from ..retrieval import audit as _audit, confident as _confident, summary as _summary  # noqa: F401
    from ..retrieval.memory import baseline, parse_memory, return_freed_memory
    from ..tables import table_output, write_table
    from ..workdir import work_path

    return_freed_memory()  # so that blocks the audit frees leave its resident set
    start = baseline()  # the budget counts from here: the libraries imported, no data read (retrieval.memory)
    device = spec.device if isinstance(spec, AuditSpec) else spec.get("device")
    with _process_group(distributed, device, timeout) as comm:
        rank = comm.rank if comm is not None else 0
        try:
            failure, scale = None, None
            try:
                spec = spec if isinstance(spec, AuditSpec) else AuditSpec(**spec)
                work = work_path(files.table)  # OUT.work, beside the table
                targets = [table_output("--out", files.table, work=work)]
                if files.curve is not None:
                    if not spec.confident:
                        raise RelinkError("--confident-curve needs --confident (the precision targets)")
                    targets.append(table_output("--confident-curve", files.curve))
                scale = Scale(memory=None if memory is None else parse_memory(memory), held_from=start, comm=comm,
                              work=work, progress=rank == 0)
                if rank == 0:  # first, before any expensive work
                    claim("audit", targets, inputs=[("--embeddings", embeddings)], overwrite=files.overwrite)
            except Exception as exc:  # noqa: BLE001 - every rank must learn of it
                failure = exc
            sync(comm, failure)
            result = audit(embeddings, spec, scale, split=split, model=model, cohort=cohort)
        except RelinkError:
            if rank != 0:  # every rank holds the same error; one line is enough
                raise SystemExit(2) from None
            raise
    if rank != 0:
        return None
    prov = provenance.stamp(command="audit", embeddings=Path(embeddings).name, embedding_meta=result.meta,
                            split=split, settings=result.settings)
    if files.curve is not None:
        with writing(files.curve):
            write_table(result.curve, files.curve, {**prov, "table": "confident_curve"})
    with writing(files.table):
        write_table(result.table, files.table, prov)
    return result


@contextmanager
def _process_group(distributed: bool, device: str | None, timeout: float):
    """None, or the torchrun launch's process group (the rank's GPU its current device), left on exit."""
    if not distributed:
        yield None
        return
    from ..embed.distributed import TorchComm, destroy_process_group, init_process_group

    # The spec keeps the device as given: the table's provenance is then the one-process table's.
    init_process_group(device or "auto", timeout=timeout)
    try:
        yield TorchComm()
    finally:
        destroy_process_group()
