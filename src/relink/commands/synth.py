"""`relink synth` (placeholder until its module lands)."""


def register(sub):
    p = sub.add_parser("synth", help="(not yet implemented)")
    p.set_defaults(func=lambda args: print("relink synth: not yet implemented") or 1)
