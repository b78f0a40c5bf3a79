"""Codec adapters. Each adapter subclasses :class:`bench.codecs.base.Codec`."""

from .base import Codec, Encoded, RateKnob, Requirement, Semantics, bits_per_pixel
from .module import ModuleCodec, from_module

__all__ = ["Codec", "Encoded", "ModuleCodec", "RateKnob", "Requirement", "Semantics", "bits_per_pixel", "from_module"]
