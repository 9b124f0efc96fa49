"""Trailkeep's benchmarks: ``python -m bench`` measures every path, writes the report."""
