"""Differentially private mitigation: retrain only the projection heads on cached trunk features.

Modules: :mod:`.heads_data` (trunk-feature datasets, bank checks),
:mod:`.loss` (per-example InfoNCE against a fixed bank), :mod:`.accounting`
(epsilon for sigma and sigma for epsilon, PRV and RDP), :mod:`.train`
(``fit_heads``), :mod:`.apply` (new heads onto cached features, write-back),
:mod:`.effects` (before/after, transfer, epsilon sweep tables).
"""

#: Training defaults shared by the API and `relink mitigate`. With the noise of a
#: private run, ``lr`` x steps sets how far the heads move (and so how much
#: alignment is lost) at a given epsilon; the guarantee does not depend on it.
DEFAULTS = {"epochs": 5, "batch_size": 256, "lr": 1e-2, "temperature": 0.07}
