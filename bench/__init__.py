"""Benchmarks: python -m bench.run [--quick]."""
