"""Benchmarks of the training engine. Results are in docs/benchmarks.md."""
