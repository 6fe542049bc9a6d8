"""Embed a cohort with an open_clip model into an EmbeddingSet (``relink embed``).

:func:`embed_cohort` is the entry point; :mod:`.dataset` feeds the model,
:mod:`.shards` keeps resumable state, :mod:`.distributed` splits the work
across ``torchrun`` processes.
"""

from .run import embed_cohort

__all__ = ["embed_cohort"]
