"""relink: audit and mitigate cross-modal re-linkage in chest-radiograph VLMs.

The front doors (:mod:`relink.api`: ``audit``, ``report``, ``mitigate``, ``probe``, ``embed``,
``train_heads``), the specs and ``load_embeddings`` load on first use, so ``import relink`` stays cheap.
``relink.report`` and ``relink.embed`` are also sub-packages, which Python would set over the function
of that name: they are made callable instead. The layers: docs/design.md and the import-linter
contract in pyproject.toml.
"""

import importlib
import sys
import types

__version__ = "0.1.0"

# name -> (module, function) of each front door
FRONT_DOORS = {
    "audit": ("relink.api.audit", "audit"),
    "report": ("relink.api.report", "report"),
    "mitigate": ("relink.api.mitigate", "mitigate"),
    "probe": ("relink.api.probe", "probe"),
    "embed": ("relink.api.embed", "embed"),
    "train_heads": ("relink.api.train_heads", "train_heads"),
}


# what a notebook needs beside the front doors, loaded on first use as well
EXPORTS = {
    "AuditSpec": ("relink.retrieval.spec", "AuditSpec"),
    "ReportSpec": ("relink.report.threat", "ReportSpec"),
    "MitigationSpec": ("relink.dp.spec", "MitigationSpec"),
    "load_embeddings": ("relink.embeddings", "load"),
}


def _front_door(name: str):
    module, function = FRONT_DOORS[name]
    return getattr(importlib.import_module(module), function)


class _CallablePackage(types.ModuleType):
    """A sub-package that is also its front door: calling it calls the function of the same name."""

    def __call__(self, *args, **kwargs):
        return _front_door(self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Relink(types.ModuleType):
    """The ``relink`` module: a sub-package named like a front door becomes callable when it is imported."""

    def __setattr__(self, name, value):
        if name in FRONT_DOORS and isinstance(value, types.ModuleType) and type(value) is types.ModuleType:
            value.__class__ = _CallablePackage
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Relink


def __getattr__(name: str):
    if name in EXPORTS:
        module, attr = EXPORTS[name]
        return getattr(importlib.import_module(module), attr)
    if name not in FRONT_DOORS:
        raise AttributeError(f"module 'relink' has no attribute {name!r}")
    try:  # a sub-package of that name (relink.report, relink.embed): imported, it is set here, callable
        return importlib.import_module(f"relink.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"relink.{name}":
            raise
    return _front_door(name)


def __dir__():
    return sorted([*globals(), *FRONT_DOORS, *EXPORTS])
