"""Sub-commands of the ``relink`` console script (see :mod:`relink.cli`)."""

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the examples in epilogs as written; show a default only where it says something (never ``(default:
    None)`` or a switch's ``(default: True)``)."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        if "%(default)" in help_text or "(default:" in help_text:
            return help_text
        default = action.default
        if default in (None, argparse.SUPPRESS) or isinstance(default, bool) or action.nargs == 0:
            return help_text
        if isinstance(default, (list, tuple)) and not default:
            return help_text
        return help_text + " (default: %(default)s)"


JOIN_TIMEOUT = 600.0  # relink.embed.distributed.JOIN_TIMEOUT (not imported here: that module loads torch)


def add_timeout(parser) -> None:
    """The ``--timeout`` of a command that runs under torchrun (``--distributed``)."""
    from ..options import argtype

    parser.add_argument("--timeout", type=argtype(float, 0, 86400, low_open=True), default=JOIN_TIMEOUT,
                        metavar="SECONDS", help="--distributed: how long each process waits for the others to join "
                                                "before it stops with one line naming the ranks that did not arrive")
