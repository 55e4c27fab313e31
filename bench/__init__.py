"""Benchmarks. Each prints its figures against a limit measured in the same run (never a
wall-clock constant), ends with one summary line, and writes JSON to ``bench/out/``."""
