"""Dataset adapters. Each adapter subclasses :class:`bench.datasets.base.Dataset`."""

from .base import ClassSet, Dataset, Sample

__all__ = ["ClassSet", "Dataset", "Sample"]
