"""Differentially private mitigation: retrain only the projection heads on cached trunk features.

Modules: :mod:`.heads_data` (trunk-feature datasets, bank checks),
:mod:`.loss` (per-example InfoNCE against a fixed bank), :mod:`.accounting`
(epsilon for sigma and sigma for epsilon, PRV and RDP), :mod:`.train`
(``fit_heads``), :mod:`.apply` (new heads onto cached features, write-back),
:mod:`.effects` (before/after, transfer, epsilon sweep tables).
"""
