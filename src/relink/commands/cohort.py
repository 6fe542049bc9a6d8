"""`relink cohort` (placeholder until its module lands)."""


def register(sub):
    p = sub.add_parser("cohort", help="(not yet implemented)")
    p.set_defaults(func=lambda args: print("relink cohort: not yet implemented") or 1)
