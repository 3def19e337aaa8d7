"""Evaluation: retrieval metrics and the benchmarks behind `cir eval`."""
