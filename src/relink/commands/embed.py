"""`relink embed` (placeholder until its module lands)."""


def register(sub):
    p = sub.add_parser("embed", help="(not yet implemented)")
    p.set_defaults(func=lambda args: print("relink embed: not yet implemented") or 1)
