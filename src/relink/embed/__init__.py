"""Embed cohorts with open_clip models into EmbeddingSets (``relink embed``): :func:`embed_cohort`
(one model) and :func:`embed_many` (several models, one decode per row)."""

from .run import EmbedJob, embed_cohort, embed_many

__all__ = ["EmbedJob", "embed_cohort", "embed_many"]
