"""The ``relink`` console script: one sub-command per stage.

Each sub-command lives in ``relink/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser (with examples in the
epilog) and sets ``func`` to a ``run(args) -> int`` callable. Command modules
import heavy libraries (torch, open_clip, opacus) inside ``run`` so that
``relink --help`` stays fast.

Errors: a :class:`relink.errors.RelinkError` prints one line,
``relink <command>: error: <message>``, and exits 2; nothing else is shown.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .errors import RelinkError

COMMANDS = ("synth", "cohort", "train", "embed", "audit", "neighbors", "mitigate", "probe", "paper")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relink",
        description="Audit and mitigate cross-modal re-linkage of chest radiographs to their reports.",
        epilog="Run `relink COMMAND --help` for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"relink {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"relink.commands.{name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RelinkError as exc:
        print(f"relink {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"relink {args.command}: interrupted (finished shards are kept; run again to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
