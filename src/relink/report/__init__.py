"""The custodian's report: one page that turns a re-linkage audit into a verdict a data-protection officer can act on.

``relink report`` (:mod:`relink.commands.report`) reads an EmbeddingSet and a
declared threat model and writes one standalone HTML page plus a JSON file
holding the same numbers. Modules, one idea each:

* :mod:`.threat` — :class:`~.threat.ReportSpec`, the declared threat model and
  thresholds (one frozen spec: flags, defaults, checks), and its checks
  against the data;
* :mod:`.risk` — headline figures: expected re-linked images = Recall@K(N) x M
  with patient-clustered intervals, lift over chance, both directions, both
  levels, and the generated headline sentence;
* :mod:`.hard` — the same figures in pathology-matched pools beside random
  pools on the same covered queries;
* :mod:`.groups` — where risk concentrates (label groups, views, studies per
  patient, a rank histogram), aggregated, with minimum-cell disclosure control;
* :mod:`.verdict` — the rule (``low`` / ``elevated`` / ``high``);
* :mod:`.mitigation` — before/after from ``relink mitigate`` outputs;
* :mod:`.columns` — views of the one audit pass: columns picked, any subset of
  rows summarised;
* :mod:`.build` — one audit pass and everything above, as one JSON-ready record;
* :mod:`.figures` — matplotlib figures as inline SVG;
* :mod:`.render` — the Jinja2 page;
* :mod:`.schema` — the JSON's versioned schema, the leak scan and the atomic
  write of both files.

Layer: above :mod:`relink.retrieval`, beside ``dp`` and ``utility``; it never
imports ``paper`` or ``commands``.
"""
