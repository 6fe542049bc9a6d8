"""Re-linkage audit: can an image be matched back to its own report by score alone?

Modules, one idea each:

* :mod:`.blocked` — blocked torch score products -> counts above / tied with
  per-row and per-column thresholds (both directions from one product);
* :mod:`.patients` — truth scores and per-patient best scores;
* :mod:`.counts` — per-query rank counts for each direction, level and kind of
  negatives;
* :mod:`.exact` — hypergeometric expected Recall@K for any pool size, MRR,
  ranks, chance levels;
* :mod:`.montecarlo` — literal random pools, the cross-check;
* :mod:`.matching` — pathology-matched groups from the 14 CheXpert labels;
* :mod:`.bootstrap` — patient-clustered bootstrap intervals;
* :mod:`.spec` — :class:`~relink.retrieval.spec.AuditSpec`, the audit's options as one frozen spec;
* :mod:`.audit` — per-query values (``audit_queries``), the tidy metric table of all
  queries or any subset (``summarise``), both at once (``audit``, ``audit_arrays``);
* :mod:`.confident` — the threshold attacker: images re-linked at a precision target;
* :mod:`.scale` — :class:`~relink.retrieval.scale.Scale`, how an audit runs (budget, processes, work folder);
* :mod:`.neighbors` — FAISS top-k listing for inspection.

Import the submodules directly (``from relink.retrieval.audit import audit``);
this package imports nothing heavy on its own.
"""
