"""The front doors: one function per capability, shared by the command line, the paper and the benchmarks.

Each takes data and a frozen spec and returns a frozen result holding the
table(s), the settings used and ``notes`` (pools dropped, unlabelled rows, ...
as data, never printed). ``relink`` exports them lazily (``relink.audit``,
``relink.report``, ...), so ``import relink`` stays cheap:

* :mod:`.audit` — ``audit(embeddings, spec, scale=None) -> AuditResult``;
* :mod:`.report` — ``report(embeddings, spec, ...) -> ReportResult``, the custodian's page and JSON;
* :mod:`.mitigate`, :mod:`.probe`, :mod:`.embed`, :mod:`.train_heads` — the DP heads, what embeddings keep,
  cohorts to EmbeddingSets, heads re-trained without DP on public pairs;
* :mod:`.results` — result types shared by them.

Layer: below ``cli``/``commands`` and ``paper`` (they call it), above ``report``, ``dp``, ``utility``,
``retrieval`` and ``embed`` (it calls them). A command is parse -> call -> print.
"""
