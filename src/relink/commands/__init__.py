"""Sub-commands of the ``relink`` console script (see :mod:`relink.cli`)."""

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the examples in epilogs as written and show defaults."""


def parse_int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]
