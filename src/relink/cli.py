"""The ``relink`` console script: one sub-command per stage.

Each ``relink/commands/<name>.py`` has ``register(subparsers)`` and imports heavy libraries inside
``run`` so that ``relink --help`` stays fast. Bad input, a bad option or an OS error: one line, exit 2.
Anything else is a bug: one line, exit 1, the traceback only with ``RELINK_DEBUG=1``. Ctrl-C prints
the command's ``INTERRUPTED`` text and exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .errors import RelinkError

COMMANDS = ("synth", "cohort", "train", "embed", "audit", "neighbors", "mitigate", "train_heads", "probe", "report",
            "paper")
DEFAULT_INTERRUPTED = "interrupted; no output was written"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``relink audit: error: argument --k: ...`` (exit 2)."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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


def _interrupted_text(command: str) -> str:
    try:
        module = importlib.import_module(f"relink.commands.{command}")
    except ImportError:
        return DEFAULT_INTERRUPTED
    return getattr(module, "INTERRUPTED", DEFAULT_INTERRUPTED)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a bad option (exit 2, one line already printed) or --help/--version (0)
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RelinkError as exc:
        print(f"relink {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"relink {args.command}: {_interrupted_text(args.command)}", file=sys.stderr)
        return 130
    except OSError as exc:
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"relink {args.command}: error: {exc.strerror or exc.__class__.__name__}{where}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if os.environ.get("RELINK_DEBUG") == "1":
            raise
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        print(f"relink {args.command}: internal error ({exc.__class__.__name__}{': ' + first if first else ''}); "
              "this is a bug in relink: re-run with RELINK_DEBUG=1 for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
