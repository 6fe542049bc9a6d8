"""``relink.report``: the custodian's report, from EmbeddingSets to a checked page and JSON, in one call.

Load and align the sets (one per attacker model, the custodian's first), build the record (one audit pass
per model), render the page and the JSON and leak-scan both; the caller then writes the result
(:meth:`ReportResult.write`). Every refusal is one line naming the input (``--embeddings DIR``,
``--split``, ``--cohort FILE``, ``--mitigated DIR``), never a row's content.

    result = relink.report("emb/", ReportSpec(attacker_pools=(100,), released=5000), split="test")
    result.write("report.html", json="report.json")
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import pandas as pd

from ..embeddings import EmbeddingSet
from ..errors import RelinkError
from ..report.threat import ReportSpec
from .results import ReportResult

SetLike = Union[str, os.PathLike, EmbeddingSet]
IDENTIFIERS = ("pair_id", "patient_id", "study_id")

# Confident re-links are counted in the report's one audit pass (relink.report.build); off, the report is built
# without them (its section says "not computed").
CONFIDENT_FROM_AUDIT = True
CONFIDENT_TARGETS = (0.9, 0.99)


def outputs(page: str | os.PathLike, json: str | os.PathLike | None = None,
            audit: str | os.PathLike | None = None) -> list:
    """The report's outputs for the output guard, each format checked."""
    from ..guard import Output
    from ..tables import check_format, table_output

    page = Path(page)
    if page.suffix.lower() not in (".html", ".htm"):
        raise RelinkError(f"--out {page}: the page must be an .html file")
    outs = [Output("--out", page)]
    if json is not None:
        if Path(json).suffix.lower() != ".json":
            raise RelinkError(f"--json {json}: must be a .json file")
        outs.append(Output("--json", Path(json)))
    if audit is not None:
        check_format(Path(audit))
        outs.append(table_output("--audit", Path(audit)))
    return outs


def _as_list(embeddings: SetLike | Sequence[SetLike]) -> list[SetLike]:
    if isinstance(embeddings, (str, os.PathLike, EmbeddingSet)):
        return [embeddings]
    sets = list(embeddings)
    if not sets:
        raise RelinkError("--embeddings: give at least one embedding set")
    return sets


def _load(item: SetLike) -> tuple[EmbeddingSet, str]:
    from .. import embeddings as emb

    if isinstance(item, EmbeddingSet):
        return item, item.where
    return emb.load(item), str(item)


def audited_rows(es: EmbeddingSet, split: str | None) -> tuple[EmbeddingSet, np.ndarray | None]:
    """The rows to audit and their positions in the set (None: every row, in order).

    Without ``split``, training rows are never mixed silently into a held-out audit: a set holding ``train``
    rows beside others is refused unless ``split="all"`` says so.
    """
    if split == "all":
        return es, None
    if split is not None:
        mask = es.split_mask(split)
        return es.subset(mask), np.flatnonzero(mask)
    splits = sorted(map(str, es.rows["split"].dropna().unique())) if "split" in es.rows else []
    if "train" in splits and len(splits) > 1:
        raise RelinkError(f"--split: the embedding set mixes train rows with held-out rows (splits: "
                          f"{', '.join(splits)}); give --split NAME to audit one split, or --split all to audit every "
                          "row together")
    return es, None


def panel_sets(embeddings: SetLike | Sequence[SetLike], split: str | None, names: Sequence[str] | None = None):
    """The panel's members (the custodian's set first, every other aligned to its rows), the identifiers of
    every loaded row (for the leak scan), and notes."""
    from ..report import panel

    items = _as_list(embeddings)
    loaded = [_load(item) for item in items]
    audited = [audited_rows(es, split) for es, _ in loaded]
    base, base_pos = audited[0]
    base_where = loaded[0][1]
    sets, notes = [base], []
    for i, ((es, pos), (_, where)) in enumerate(zip(audited[1:], loaded[1:]), start=2):
        aligned, moved = panel.align(base, es, where, base_where, base_pos, pos)
        sets.append(aligned)
        if moved:
            notes.append(f"embedding set {i} lists the audited pairs in another order: it was aligned to the first "
                         "set's rows")
    if names is not None and (len(names) != len(sets) or len(set(names)) != len(names)):
        raise RelinkError(f"names: give {len(sets)} distinct names, one per embedding set")
    names = list(names) if names is not None else panel.names(sets)
    members = [panel.Member(es, name, where) for es, name, (_, where) in zip(sets, names, loaded)]
    ids = {col: [v for es, _ in loaded if col in es.rows for v in es.rows[col].astype(str)] for col in IDENTIFIERS}
    return members, ids, notes


def cohort_views(cohort: str | os.PathLike, rows: pd.DataFrame) -> tuple[pd.Series | None, list[str]]:
    """The manifest's view per audited row (None when it has no view column), and its reports for the scan."""
    from ..cohort import read_cohort

    frame = read_cohort(cohort, validate_rows=False).frame
    if "pair_id" not in frame:
        raise RelinkError(f"--cohort {cohort}: the manifest has no pair_id column")
    ids = frame["pair_id"].astype(str)
    if not rows["pair_id"].astype(str).isin(set(ids)).any():
        raise RelinkError(f"--cohort {cohort}: shares no pair_id with --embeddings (another cohort?)")
    reports = frame["report"].dropna().astype(str).tolist() if "report" in frame else []
    if "view" not in frame:
        return None, reports
    views = frame.assign(pair_id=ids).drop_duplicates("pair_id").set_index("pair_id")["view"]
    return views.reindex(rows["pair_id"].astype(str)).reset_index(drop=True), reports


def confident_targets(spec: ReportSpec) -> tuple[float, ...]:
    """The precision targets the report's audit pass counts confident re-links at (none while off)."""
    if not CONFIDENT_FROM_AUDIT:
        return ()
    return tuple(sorted({*CONFIDENT_TARGETS, spec.confident_precision}))


def _notes(record: dict[str, Any]) -> list[str]:
    out = []
    hn = record["hard_negatives"]
    if hn["note"]:
        out.append(hn["note"])
    extra = [p for p in hn["pools"] if p not in record["settings"]["report"]["attacker_pools"]]
    if extra:
        out.append("pathology-matched figures are also shown at N = " + ", ".join(f"{p:,}" for p in extra)
                   + " (a matched pool of the declared size fills only from the most common label vectors)")
    if not record["confident"]["available"] or record["confident"].get("note"):
        out.append(record["confident"]["note"])
    return out


def report(embeddings: SetLike | Sequence[SetLike], spec: ReportSpec | None = None, *, split: str | None = None,
           cohort: str | os.PathLike | None = None, mitigated: Sequence[str | os.PathLike] = (),
           confident: pd.DataFrame | None = None, retrained: dict[str, Any] | None = None,
           names: Sequence[str] | None = None, source: dict[str, Any] | None = None,
           provenance: dict[str, Any] | None = None,
           progress: bool = False) -> ReportResult:
    """The custodian's report for EmbeddingSets of the same rows (the custodian's model first), not yet written.

    ``split``: the split to audit (``"all"``: every row); ``cohort``: the manifest, for the breakdown by view
    and the scan for report text; ``mitigated``: ``relink mitigate`` study folders; ``confident``: confident
    re-link rows (default: counted in the report's audit pass); ``retrained``: the paired Recall@1 difference
    of heads re-trained on public pairs; ``names``: how the page names each model (default: its spec, never a
    local path); ``source``, ``provenance``: how the page names the audited set, and its provenance fields.
    """
    from .. import provenance as prov
    from ..report import build, mitigation, render, schema

    spec = spec or ReportSpec()
    members, ids, notes = panel_sets(embeddings, split, names)
    es = members[0].es
    views, reports = cohort_views(cohort, es.rows) if cohort is not None else (None, [])
    runs = [mitigation.resolve(str(p), es, None if split == "all" else split) for p in mitigated]
    splits = sorted(map(str, es.rows["split"].dropna().unique())) if "split" in es.rows else []
    folders = [Path(m.where).name for m in members]
    source = source or {"embeddings": ", ".join(folders), "split": ", ".join(splits) or None}

    warm = threading.Thread(target=render.warm_up, daemon=True)  # the plotting stack loads beside the audit
    warm.start()
    record, table = build.build(es, spec, source, views=views, mitigated=runs, progress=progress,
                                name=members[0].name, panel=[(m.name, m.es) for m in members[1:]],
                                confident=confident,
                                confident_targets=confident_targets(spec) if confident is None else (),
                                retrained=retrained)
    warm.join()
    if provenance is None:
        provenance = {"command": "report", "embeddings": folders if len(folders) > 1 else folders[0], "split": split,
                      "mitigated": [m.name for m in runs],
                      "cohort_manifest": Path(cohort).name if cohort is not None else None}
    stamp = prov.stamp(**provenance)
    doc = schema.document(record, stamp)
    html, text = render.render(doc), schema.json_text(doc)
    # both texts are scanned, the JSON even when it is not written: the page is drawn from it
    schema.leak_check({"the page": html, "the JSON": text}, ids, reports)
    inputs = (("--embeddings", tuple(m.where for m in members if Path(m.where).exists())),
              ("--cohort", cohort), ("--mitigated", tuple(str(p) for p in mitigated)))
    return ReportResult(doc, html, text, table, spec, tuple(notes + _notes(record)), inputs)


def write(result: ReportResult, page: str | os.PathLike, json: str | os.PathLike | None = None,
          audit: str | os.PathLike | None = None, overwrite: bool = False) -> list[Path]:
    """:meth:`ReportResult.write`."""
    from ..guard import claim
    from ..report import schema
    from ..tables import write_table

    claim("report", outputs(page, json, audit), inputs=result.inputs, overwrite=overwrite)
    texts = {Path(page): (result.html, "--out")}
    if json is not None:
        texts[Path(json)] = (result.json, "--json")
    schema.write_outputs(texts)
    written = list(texts)
    if audit is not None:
        write_table(result.table, audit, result.document["provenance"])
        written.append(Path(audit))
    return written
