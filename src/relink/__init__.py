"""relink: audit and mitigate cross-modal re-linkage in chest-radiograph VLMs.

Layers (imports point one way, function-local imports included; enforced by
the import-linter contract in pyproject.toml, run by ``tests/test_layers.py``):

1. ``cli``, ``commands`` — the console script, one module per sub-command;
2. ``paper`` — profiles, cached stages, results, chapters, the book;
3. ``report``, ``dp``, ``utility`` — the custodian's report, DP mitigation of
   the projection heads, what the embeddings keep (independent of each other);
4. ``retrieval`` — the re-linkage audit;
5. ``embed`` — cohorts to EmbeddingSets;
6. ``models`` — open_clip models, their heads and trunks, the synthetic ladder;
7. ``loaders``, ``synth`` — official datasets and the synthetic cohort;
8. ``cohort``, ``embeddings``, ``leakscan``, ``tables``, ``provenance``,
   ``workdir`` — data contracts, what is written, resumable work folders;
9. ``io``, ``options``, ``labels`` — atomic writes and the output guard,
   options checked by flag, the 14 labels;
10. ``errors``.

A module may import from its own layer's siblings only where the layer is
written with ``:`` in the contract (``|`` means independent).
"""

__version__ = "0.1.0"
