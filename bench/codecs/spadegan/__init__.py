"""SPADE-GAN semantic codec of Iwai, Miyazaki & Omachi (IEEE Access 2024), from the paper.

Modules: :mod:`.model` (networks), :mod:`.labelmap` (class reduction, downscaling,
autoregressive label-map coder, Table 2), :mod:`.bitstream` (ŷ / ẑ rANS streams, header),
:mod:`.checkpoint` (file format), :mod:`.train` (``bench train spadegan``), :mod:`.adapter`
(the :class:`~bench.codecs.base.Codec`, card ``codecs/spadegan.yaml``).
"""
