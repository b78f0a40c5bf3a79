"""Storage: the run store (SQLite), recovery of damaged stores, atomic writes."""
