"""``relink.mitigate``: retrain only the projection heads with DP, and write what may be released.

The caller claims ``out`` and ``study`` first (:func:`relink.guard.claim`). The noise is secret unless
``spec.reproducible_noise`` publishes it, and then every output says it is for study, not for release.
"""

from __future__ import annotations

import os
from typing import Sequence

from ..dp.service import Mitigation
from ..dp.spec import MitigationSpec
from ..embeddings import EmbeddingSet
from .results import with_trunk

__all__ = ["Mitigation", "MitigationSpec", "mitigate"]


def mitigate(embeddings: EmbeddingSet | str | os.PathLike, spec: MitigationSpec, *, bank=None, model=None,
             init: str | None = None, trunk_trained_on: str | None = None, apply: Sequence = (),
             names: Sequence[str] | None = None, bank_name: str | None = None, out: str | os.PathLike | None = None,
             study: str | os.PathLike | None = None, progress: bool | None = None) -> Mitigation:
    """:func:`relink.dp.service.mitigate` on sets or their folders (``names`` default to the folder names);
    with ``out`` (and ``study``) write the folders."""
    from pathlib import Path

    from ..dp import service
    from ..dp.release import write

    given = [embeddings, *apply]
    if names is None and all(isinstance(x, (str, os.PathLike)) for x in given):
        names = [Path(x).name or "embeddings" for x in given]
    result = service.mitigate(with_trunk(embeddings), spec, bank=None if bank is None else with_trunk(bank),
                              model=model, init=init, trunk_trained_on=trunk_trained_on,
                              apply=[with_trunk(x) for x in apply],
                              names=names, bank_name=bank_name, progress=progress)
    if out is not None:
        write(result, out, study)
    return result
