"""The front doors: one function per capability, shared by the command line, the paper and the benchmarks.

Each takes data and a frozen spec and returns a frozen result: the table(s), the settings used and
``notes`` (pools dropped, unlabelled rows, ... as data, never printed). ``relink`` exports them lazily.
Layer: below ``commands`` and ``paper``, above ``report``, ``dp``, ``utility``, ``retrieval`` and ``embed``.
"""
