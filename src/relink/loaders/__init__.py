"""Loaders that map official dataset releases onto the cohort contract (:mod:`relink.cohort`); each
returns a :class:`LoadResult` ready for :func:`relink.cohort.write_cohort`."""

from .chexpert_plus import load_chexpert_plus
from .common import LoadResult, skip_summary
from .mimic_cxr import load_mimic_cxr
from .sections import select_report

__all__ = ["LoadResult", "load_chexpert_plus", "load_mimic_cxr", "select_report", "skip_summary"]
