"""SPIC (Pezone et al.): semantic-preserving image coding with a conditional diffusion model.

Sender: the label map (lossless, :mod:`.labelcoder`) and a 4×-downsampled BPG-coded coarse
image. Receiver: a SPADE-conditioned super-resolution diffusion U-Net (:mod:`.unet`) sampled
with the official respaced schedule and classifier-free guidance (:mod:`.diffusion`).
"""
