"""The synthetic paired cohort: chest-radiograph-like images and their reports.

It stands in for MIMIC-CXR (site ``internal``) and CheXpert Plus (site
``external``, with a shift in image appearance and report style) wherever the
project runs without the real data. Modules, one idea each:

* :mod:`.anatomy`  patient and study parameters (the single source of truth);
* :mod:`.draw`     vectorised drawing primitives on a millimetre canvas;
* :mod:`.render`   the radiograph, from the parameters;
* :mod:`.phrases`  radiology phrasing of one finding or device, with labeler tags;
* :mod:`.report`   the report (findings, impression) and its CheXpert labels;
* :mod:`.generate` the driver: seeds, workers, splits, atomic cohort folder.
"""

from .generate import SITES, generate_cohort

__all__ = ["SITES", "generate_cohort"]
