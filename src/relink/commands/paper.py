"""`relink paper` (placeholder until its module lands)."""


def register(sub):
    p = sub.add_parser("paper", help="(not yet implemented)")
    p.set_defaults(func=lambda args: print("relink paper: not yet implemented") or 1)
