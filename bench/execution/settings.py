"""Defaults of a run that the command line shows in its help (no heavy imports)."""

#: Images per metric-network batch (results do not depend on it).
DEFAULT_BATCH_SIZE = 8
