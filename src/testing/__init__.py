"""Helpers for tests and benchmarks that the package ships (no dataset needed)."""
