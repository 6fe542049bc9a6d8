"""Embed cohorts with open_clip models into EmbeddingSets (``relink embed``).

:func:`embed_cohort` (one model) and :func:`embed_many` (several models, one
decode per row) are the entry points; :mod:`.dataset` decodes rows,
:mod:`.fanout` feeds each decoded row to every model that takes it, :mod:`.shards` keeps resumable
state, :mod:`.merge` writes (or reuses) the finished set, :mod:`.distributed`
joins a ``torchrun`` process group.
"""

from .run import EmbedJob, embed_cohort, embed_many

__all__ = ["EmbedJob", "embed_cohort", "embed_many"]
