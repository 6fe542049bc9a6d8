"""One exception type for every user-facing failure: printed on one line, never a traceback;
messages name the file, row or option at fault."""

from __future__ import annotations


class RelinkError(Exception):
    """A clear, user-facing error (bad input, bad option, missing artifact)."""


class CohortError(RelinkError):
    """A cohort manifest or one of its rows breaks the cohort contract."""


class EmbeddingError(RelinkError):
    """An EmbeddingSet folder breaks its contract."""


class ModelError(RelinkError):
    """A model spec cannot be resolved or loaded."""
