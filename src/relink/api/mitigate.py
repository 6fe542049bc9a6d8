"""``relink.mitigate``: retrain only the projection heads with DP, and write what may be released.

Takes EmbeddingSets (or their folders) and a
:class:`relink.dp.spec.MitigationSpec`; returns the frozen
:class:`relink.dp.service.Mitigation` (heads, privacy report, spec, model,
the sets it re-projects, notes). With ``out`` it writes the release folder
and, with ``study``, the study folder (:func:`relink.dp.release.write`); the
caller claims both first (:func:`relink.guard.claim`). The noise is secret
unless ``spec.reproducible_noise`` publishes it, and then every output says
it is for study, not for release.
"""

from __future__ import annotations

import os
from typing import Sequence

from ..dp.service import Mitigation
from ..dp.spec import MitigationSpec
from ..embeddings import EmbeddingSet

__all__ = ["Mitigation", "MitigationSpec", "mitigate"]


def _set(value) -> EmbeddingSet:
    from ..embeddings import load

    return value if isinstance(value, EmbeddingSet) else load(value, require_trunk=True)


def mitigate(embeddings: EmbeddingSet | str | os.PathLike, spec: MitigationSpec, *, bank=None, model=None,
             init: str | None = None, trunk_trained_on: str | None = None, apply: Sequence = (),
             names: Sequence[str] | None = None, bank_name: str | None = None, out: str | os.PathLike | None = None,
             study: str | os.PathLike | None = None, progress: bool | None = None) -> Mitigation:
    """Train DP heads on ``embeddings``' ``train`` rows (see :func:`relink.dp.service.mitigate` for every
    argument); with ``out`` (and ``study``) write the folders. Sets may be given as folders; ``names`` then
    default to the folder names."""
    from pathlib import Path

    from ..dp import service
    from ..dp.release import write

    given = [embeddings, *apply]
    if names is None and all(isinstance(x, (str, os.PathLike)) for x in given):
        names = [Path(x).name or "embeddings" for x in given]
    result = service.mitigate(_set(embeddings), spec, bank=None if bank is None else _set(bank), model=model,
                              init=init, trunk_trained_on=trunk_trained_on, apply=[_set(x) for x in apply],
                              names=names, bank_name=bank_name, progress=progress)
    if out is not None:
        write(result, out, study)
    return result
