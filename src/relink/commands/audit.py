"""`relink audit` (placeholder until its module lands)."""


def register(sub):
    p = sub.add_parser("audit", help="(not yet implemented)")
    p.set_defaults(func=lambda args: print("relink audit: not yet implemented") or 1)
