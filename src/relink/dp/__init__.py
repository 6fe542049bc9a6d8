"""Differentially private mitigation: retrain only the projection heads on cached trunk features.

Modules: :mod:`.spec` (``MitigationSpec``: every option and default, once),
:mod:`.service` (``mitigate``, behind :func:`relink.api.mitigate.mitigate`), :mod:`.train` (``fit_heads``, the secret or published noise
seed, the privacy report), :mod:`.steps` (the Opacus mechanism, one step at
a time), :mod:`.heads_data` (trunk-feature datasets, bank checks),
:mod:`.loss` (per-example InfoNCE against a fixed bank), :mod:`.accounting`
(schedule, epsilon for sigma and sigma for epsilon, PRV and RDP),
:mod:`.apply` (new heads onto cached features, heads files, write-back),
:mod:`.retrain` (the attacker's heads, trained without DP on public pairs).
"""
