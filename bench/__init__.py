"""The comparative benchmark harness (see BENCHMARKS.md once it exists)."""
