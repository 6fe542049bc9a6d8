"""Re-linkage audit: can an image be matched back to its own report by score alone?

* :mod:`.audit` — per-query values (``audit_queries``) and the tidy metric table (``summarise``, ``audit``);
* :mod:`.engine` — the per-query rank counts, from one blocked pass (``count_ranks``);
* :mod:`.exact` — hypergeometric expected Recall@K for any pool size, MRR, ranks, chance levels;
* :mod:`.summary`, :mod:`.values`, :mod:`.bootstrap`, :mod:`.intervals` — the table, per-query values and
  patient-clustered intervals;
* :mod:`.confident` — the threshold attacker: images re-linked at a precision target;
* :mod:`.montecarlo` — literal random pools, the cross-check; :mod:`.matching` — pathology-matched groups;
* :mod:`.contrast` — paired comparisons on the same rows; :mod:`.neighbors` — FAISS top-k for inspection;
* :mod:`.spec`, :mod:`.pools`, :mod:`.scale` — what an audit computes, its pool sizes, how it runs.

Import the submodules directly (``from relink.retrieval.audit import audit``); this package imports nothing
heavy on its own.
"""
