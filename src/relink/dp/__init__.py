"""Differentially private mitigation: retrain only the projection heads on cached trunk features.

Modules: :mod:`.spec` (``MitigationSpec``: every option and default, once),
:mod:`.service` (``mitigate`` and ``sweep``: what `relink mitigate` and the
paper call), :mod:`.train` (``fit_heads``, the secret or published noise
seed, the privacy report), :mod:`.steps` (the Opacus mechanism, one step at
a time), :mod:`.heads_data` (trunk-feature datasets, bank checks),
:mod:`.loss` (per-example InfoNCE against a fixed bank), :mod:`.accounting`
(schedule, epsilon for sigma and sigma for epsilon, PRV and RDP),
:mod:`.apply` (new heads onto cached features, heads files, write-back).
"""
