"""`relink probe` (placeholder until its module lands)."""


def register(sub):
    p = sub.add_parser("probe", help="(not yet implemented)")
    p.set_defaults(func=lambda args: print("relink probe: not yet implemented") or 1)
