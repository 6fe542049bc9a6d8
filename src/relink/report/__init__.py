"""The custodian's report: one page that turns a re-linkage audit into a verdict a data-protection officer can act on.

``relink report`` (:mod:`relink.commands.report`) reads an EmbeddingSet and a declared threat model
(:mod:`.threat`) and writes one standalone HTML page (:mod:`.render`) plus a JSON file holding the same numbers
(:mod:`.schema`), both built from one audit pass (:mod:`.build`); each other module holds one section of the page.

Layer: above :mod:`relink.retrieval`, beside ``dp`` and ``utility``; it never imports ``paper`` or ``commands``.
"""
