"""relink: audit and mitigate cross-modal re-linkage in chest-radiograph VLMs."""

__version__ = "0.1.0"
