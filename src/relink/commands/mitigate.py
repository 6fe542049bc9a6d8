"""`relink mitigate` (placeholder until its module lands)."""


def register(sub):
    p = sub.add_parser("mitigate", help="(not yet implemented)")
    p.set_defaults(func=lambda args: print("relink mitigate: not yet implemented") or 1)
