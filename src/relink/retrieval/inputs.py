"""The vocabularies of the audit's options, in a module that imports nothing heavy: the command line builds its
parser without loading torch, pandas or scipy (pools: :mod:`relink.retrieval.pools`)."""

from __future__ import annotations

from .pools import FULL  # noqa: F401 (the pools' home is relink.retrieval.pools)

DIRECTIONS = ("image_to_report", "report_to_image")
LEVELS = ("study", "patient")
TIES = ("random", "pessimistic", "optimistic")
