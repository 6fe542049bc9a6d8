"""`relink train` (placeholder until its module lands)."""


def register(sub):
    p = sub.add_parser("train", help="(not yet implemented)")
    p.set_defaults(func=lambda args: print("relink train: not yet implemented") or 1)
