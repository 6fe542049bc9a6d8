"""One exception type for every user-facing failure.

The command line prints ``str(error)`` on one line and exits non-zero; it
never shows a traceback for a :class:`RelinkError`. Messages name the file,
row or option at fault.
"""

from __future__ import annotations


class RelinkError(Exception):
    """A clear, user-facing error (bad input, bad option, missing artifact)."""


class CohortError(RelinkError):
    """A cohort manifest or one of its rows breaks the cohort contract."""


class EmbeddingError(RelinkError):
    """An EmbeddingSet folder breaks its contract."""


class ModelError(RelinkError):
    """A model spec cannot be resolved or loaded."""
