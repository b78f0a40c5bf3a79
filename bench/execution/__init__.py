"""Execution: the runner, the coding/measuring pipeline, local and Ray executors, result cache, provenance."""
