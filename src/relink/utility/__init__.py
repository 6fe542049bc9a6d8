"""Utility the embeddings keep: linear probe, zero-shot AUROC, retrieval of members vs non-members."""
