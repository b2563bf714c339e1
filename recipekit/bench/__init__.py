"""Benchmark harness: packing efficiency, training and scoring throughput (see bench/README.md)."""
