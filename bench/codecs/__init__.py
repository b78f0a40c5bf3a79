"""Codec adapters. Each adapter subclasses :class:`bench.codecs.base.Codec`."""

from .base import Codec, Encoded, RateKnob, Requirement, Semantics, bits_per_pixel

__all__ = ["Codec", "Encoded", "RateKnob", "Requirement", "Semantics", "bits_per_pixel"]
