"""Checkpoints: loading, merging adapters, 4-bit export, probes, and pushing to a hub."""
