"""Differentially private mitigation: retrain only the projection heads on cached trunk features.

Entry: :func:`.service.mitigate` (behind :func:`relink.api.mitigate.mitigate`) for a :class:`.spec.MitigationSpec`;
:mod:`.train` holds the secret noise seed, :mod:`.steps` the Opacus mechanism, :mod:`.release` what may be released.
"""
