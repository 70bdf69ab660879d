"""Benchmarks behind ``freqdata bench``: commands that print a table and write JSON."""
