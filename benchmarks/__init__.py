"""Benchmarks: each ``<name>_bench.py`` prints its figures, and one JSON line with --json."""
