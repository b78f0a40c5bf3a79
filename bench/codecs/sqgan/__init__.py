"""SQ-GAN (Pezone, Barbarossa, Caire 2025): semantic masked VQ-GAN codec for Cityscapes.

See :mod:`.adapter` for the bench codec, :mod:`.model` for the network, :mod:`.bitstream`
for the real bytes and :mod:`.checkpoint` for the official weight layouts.
"""
