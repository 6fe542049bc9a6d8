"""relink: audit and mitigate cross-modal re-linkage in chest-radiograph VLMs.

Front doors (:mod:`relink.api`), loaded on first use so that ``import relink``
stays cheap: ``relink.audit``, ``relink.report``, ``relink.mitigate``,
``relink.probe``, ``relink.embed``, ``relink.train_heads``; each takes data
and a frozen spec and returns a frozen result. The specs (``relink.AuditSpec``,
``relink.ReportSpec``, ``relink.MitigationSpec``) and ``relink.load_embeddings``
load the same way.

``relink.report`` and ``relink.embed`` are also the names of sub-packages.
Python sets a sub-package as an attribute of its parent when it is
imported, which would hide a function of the same name; so those two
sub-packages are made callable instead: ``relink.report(...)`` calls
:func:`relink.api.report.report` whichever was imported first, and
``relink.report.build`` stays the module it always was.

Layers (imports point one way, function-local imports included; enforced by
the import-linter contract in pyproject.toml, run by ``tests/test_layers.py``):

1. ``cli``, ``commands`` — the console script, one module per sub-command;
2. ``paper`` — profiles, cached stages, results, chapters, the book;
3. ``api`` — the front doors, one function per capability;
4. ``report``, ``dp``, ``utility`` — the custodian's report, DP mitigation of
   the projection heads, what the embeddings keep (independent of each other);
5. ``retrieval`` — the re-linkage audit;
6. ``embed`` — cohorts to EmbeddingSets;
7. ``models`` — open_clip models, their heads and trunks, the synthetic ladder;
8. ``loaders``, ``synth`` — official datasets and the synthetic cohort;
9. ``cohort``, ``embeddings``, ``leakscan``, ``tables``, ``provenance``,
   ``workdir`` — data contracts, what is written, resumable work folders;
10. ``io``, ``options``, ``labels`` — atomic writes and the output guard,
    options checked by flag, the 14 labels;
11. ``errors``.

A module may import from its own layer's siblings only where the layer is
written with ``:`` in the contract (``|`` means independent).
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
