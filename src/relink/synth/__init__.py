"""The synthetic paired cohort: chest-radiograph-like images and their reports.

It stands in for MIMIC-CXR (site ``internal``) and CheXpert Plus (site ``external``, another image
appearance and report style). :mod:`.anatomy` holds the parameters both the image and the report are
drawn from (the single source of truth).
"""

from .generate import SITES, generate_cohort

__all__ = ["SITES", "generate_cohort"]
