"""Analysis: BD metrics, statistics, protocol checks, run comparison, paired tests, checkpoint sweeps."""
