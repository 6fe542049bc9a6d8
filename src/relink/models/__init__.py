"""The model layer: one spec string to an open_clip model (see :mod:`relink.models.registry`)."""

from .registry import LoadedModel, load_model, parse_spec, register_project_configs

__all__ = ["LoadedModel", "load_model", "parse_spec", "register_project_configs"]
