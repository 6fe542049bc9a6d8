"""The path of `relink audit` through the package: which relink modules its functions run in, and in what order.

Runs `relink audit` in-process on a small generated EmbeddingSet (labels, hard negatives, intervals, the
threshold attacker, a work folder) under a profiler and prints:

* the relink modules entered, in the order first entered (function calls only: code run while a module is
  imported is left out);
* how many distinct modules that is;
* the re-entries: a call into module B from another module while B is already lower on the call stack
  (the path left B for a module further down, and that module called back up into B); each
  (from, to) pair is counted once, with the number of calls beside it;
* for orientation, the modules called into more than once from other modules (a shared helper such as
  ``relink.io`` called by several callers: not a re-entry).

With ``--save FILE`` the audit's table is also written to FILE (.parquet); with ``--compare FILE`` it is
compared cell by cell with a table saved before (exit 1 when any cell differs).

    PYTHONPATH=src python tools/trace_audit_path.py [--save before.parquet | --compare before.parquet]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


class Tracer:
    def __init__(self) -> None:
        self.order: list[str] = []
        self.seen: set[str] = set()
        self.reentries: Counter = Counter()
        self.visits: Counter = Counter()  # calls into a module from another one (or from outside relink)
        self.local = threading.local()

    def _state(self):
        if not hasattr(self.local, "stack"):
            self.local.stack, self.local.importing = [], 0
        return self.local

    def __call__(self, frame, event, arg):
        if event not in ("call", "return"):
            return
        st = self._state()
        code = frame.f_code
        if code.co_name == "<module>":  # an import runs this module's body: not the audit's path
            st.importing += 1 if event == "call" else -1
            return
        if st.importing:
            return
        name = frame.f_globals.get("__name__", "")
        if not name.startswith("relink"):
            return
        if event == "call":
            below = st.stack[-1] if st.stack else None
            if name != below:
                self.visits[name] += 1
                if name in st.stack:
                    self.reentries[(below, name)] += 1
            if name not in self.seen:
                self.seen.add(name)
                self.order.append(name)
            st.stack.append(name)
        elif st.stack:
            st.stack.pop()


def make_set(folder: Path) -> Path:
    from helpers.report import write_set

    return write_set(folder, n=240, d=16, noise=1.5, seed=3, labels=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--save", type=Path, help="write the audit's table here (.parquet)")
    ap.add_argument("--compare", type=Path, help="compare the audit's table with this saved table")
    args = ap.parse_args(argv)

    import relink.cli  # noqa: F401 - imported before tracing: imports are not the path
    from relink.cli import main as relink_main
    from relink.tables import read_table

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        emb = make_set(tmp / "set")
        out = tmp / "audit.parquet"
        argv = ["audit", "--embeddings", str(emb), "--out", str(out), "--hard-negatives", "--bootstrap", "50",
                "--pools", "10,100,full", "--k", "1,5", "--confident", "0.9", "--memory", "2G"]
        tracer = Tracer()
        threading.setprofile(tracer)
        sys.setprofile(tracer)
        try:
            rc = relink_main(argv)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
        if rc:
            print(f"relink audit exited {rc}", file=sys.stderr)
            return rc
        table, prov = read_table(out)
        settings = prov.get("settings")
        print("modules entered, in order:")
        for name in tracer.order:
            print(f"  {name}")
        print(f"distinct modules: {len(tracer.order)}")
        print(f"re-entries: {len(tracer.reentries)} (from -> to, calls)")
        for (a, b), calls in sorted(tracer.reentries.items()):
            print(f"  {a} -> {b}: {calls}")
        again = {m: v for m, v in tracer.visits.items() if v > 1}
        print(f"modules called into more than once from another module (not re-entries): {len(again)}")
        for name, v in sorted(again.items(), key=lambda kv: -kv[1]):
            print(f"  {name}: {v}")
        if args.save:
            table.to_parquet(args.save, index=False)
            args.save.with_suffix(".settings.json").write_text(json.dumps(settings, sort_keys=True, indent=1))
            print(f"table: {len(table)} rows -> {args.save}")
        if args.compare:
            import pandas as pd

            before = pd.read_parquet(args.compare)
            try:
                pd.testing.assert_frame_equal(table.reset_index(drop=True), before, check_exact=True)
            except AssertionError as exc:
                print(f"tables differ: {exc}")
                return 1
            print(f"table identical cell by cell to {args.compare} ({len(table)} rows)")
            saved = json.loads(args.compare.with_suffix(".settings.json").read_text())
            if json.loads(json.dumps(settings, sort_keys=True)) != saved:
                print("settings differ")
                return 1
            print("settings identical")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
