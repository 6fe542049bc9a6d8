"""`relink neighbors` (placeholder until its module lands)."""


def register(sub):
    p = sub.add_parser("neighbors", help="(not yet implemented)")
    p.set_defaults(func=lambda args: print("relink neighbors: not yet implemented") or 1)
