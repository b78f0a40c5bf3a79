"""The SQ-GAN inference model: semantic and image branches, split into sender/receiver.

Sender (:meth:`SQGAN.encode_tokens`): image and ground-truth SSM → for each branch the
kept token positions and their code indices. Receiver (:meth:`SQGAN.decode_tokens`):
tokens → SSM logits → one-hot SSM → image. :meth:`SQGAN.forward` chains both in memory
(the model's own quantised forward). Submodule names match the official checkpoint
prefixes (``encoder``, ``decoder``, ``masker``, ``demasker``, ``quantize`` and their
``*_semantic`` twins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    N_CLASSES,
    N_SEMANTIC_CHANNELS,
    OUTPUT_CLAMP_MAX,
    OUTPUT_CLAMP_MIN,
    SQGANConfig,
)
from .masking import Demasker, Masker, kept_count
from .networks import Encoder, SemanticDecoder, SemanticEncoder, SpadeDecoder
from .quantize import VectorQuantizer

#: Inference submodules in checkpoint order (attribute = checkpoint prefix).
MODULE_NAMES: tuple[str, ...] = (
    "encoder_semantic", "decoder_semantic", "masker_semantic", "demasker_semantic", "quantize_semantic",
    "encoder", "decoder", "masker", "demasker", "quantize",
)


@dataclass
class BranchTokens:
    """What one branch transmits: kept positions (ascending, in [0, N)) and code indices."""

    positions: np.ndarray  # int64 [k]
    indices: np.ndarray  # int64 [k], in [0, codebook_size)

    def mask(self, n_tokens: int) -> np.ndarray:
        m = np.zeros(n_tokens, dtype=bool)
        m[self.positions] = True
        return m


@dataclass
class Tokens:
    image: BranchTokens
    semantic: BranchTokens


def labels_to_onehot(labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """H×W trainIds (0..18, 255 = void) → [1, 20, H, W] float one-hot (void → channel 19).

    Ids 19..254 are not Cityscapes trainIds and raise ValueError.
    """
    lab = torch.from_numpy(np.array(labels, dtype=np.int64))
    if bool(((lab < 0) | ((lab >= N_CLASSES) & (lab != 255))).any()):
        raise ValueError("labels must be Cityscapes trainIds 0..18 or 255 (void)")
    lab = torch.where(lab == 255, torch.full_like(lab, N_CLASSES), lab)
    return F.one_hot(lab, N_SEMANTIC_CHANNELS).permute(2, 0, 1).unsqueeze(0).float()


def logits_to_onehot(logits: torch.Tensor) -> torch.Tensor:
    """[1, 20, H, W] SSM logits → one-hot of their argmax (same shape)."""
    return torch.zeros_like(logits).scatter_(1, logits.argmax(dim=1, keepdim=True), 1.0)


def normalise_image(image: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 RGB → [1, 3, H, W] ImageNet-normalised float."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def to_uint8(x: torch.Tensor, mode: str = "official") -> np.ndarray:
    """[1, 3, H, W] normalised output → H×W×3 uint8.

    ``official``: the authors' sample.py — clamp to their bounds, un-normalise, ×255 and
    truncate (outputs never reach 255). ``round``: clamp to [0, 1] and round.
    """
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    if mode == "official":
        lo = torch.tensor(OUTPUT_CLAMP_MIN, device=x.device).view(1, 3, 1, 1)
        hi = torch.tensor(OUTPUT_CLAMP_MAX, device=x.device).view(1, 3, 1, 1)
        y = (torch.maximum(torch.minimum(x, hi), lo) * std + mean) * 255.0
        y = y.floor()
    elif mode == "round":
        y = ((x * std + mean).clamp(0.0, 1.0) * 255.0).round()
    else:
        raise ValueError(f"unknown output mode {mode!r} (official | round)")
    return y[0].permute(1, 2, 0).clamp(0, 255).to(torch.uint8).cpu().numpy()


class SQGAN(nn.Module):
    """Both branches of SQ-GAN (inference only)."""

    def __init__(self, cfg: SQGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder_semantic = SemanticEncoder(cfg)
        self.decoder_semantic = SemanticDecoder(cfg)
        self.masker_semantic = Masker(cfg)
        self.demasker_semantic = Demasker(cfg)
        self.quantize_semantic = VectorQuantizer(cfg.codebook_size, cfg.codebook_dim)
        self.encoder = Encoder(cfg)
        self.decoder = SpadeDecoder(cfg)
        self.masker = Masker(cfg)
        self.demasker = Demasker(cfg)
        self.quantize = VectorQuantizer(cfg.codebook_size, cfg.codebook_dim)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.quantize.codebook.weight.device

    # -- sender ----------------------------------------------------------------------
    @staticmethod
    def _branch(masker: Masker, quantize: VectorQuantizer, z: torch.Tensor, sem19: torch.Tensor,
                k: int) -> BranchTokens:
        order, feats = masker.select(z, sem19, k)
        idx = quantize.indices(feats)
        perm = torch.argsort(order)  # transmit in raster order; quantisation is per token
        return BranchTokens(order[perm].cpu().numpy().astype(np.int64), idx[perm].cpu().numpy().astype(np.int64))

    @torch.no_grad()
    def encode_tokens(self, image: torch.Tensor, semantic20: torch.Tensor, m_image: float,
                      m_semantic: float) -> Tokens:
        """[1,3,H,W] normalised image + [1,20,H,W] one-hot SSM → kept tokens of both branches.

        ``m_image``/``m_semantic``: fractions of the ``N`` tokens KEPT, in (0, 1].
        """
        image, semantic20 = image.to(self.device), semantic20.to(self.device)
        sem19 = semantic20[:, :N_CLASSES]
        n = self.cfg.n_tokens
        z_img = self.encoder(image, sem19)
        z_sem = self.encoder_semantic(semantic20)
        return Tokens(
            image=self._branch(self.masker, self.quantize, z_img, sem19, kept_count(m_image, n)),
            semantic=self._branch(self.masker_semantic, self.quantize_semantic, z_sem, sem19,
                                  kept_count(m_semantic, n)),
        )

    # -- receiver --------------------------------------------------------------------
    @staticmethod
    def _latents(demasker: Demasker, quantize: VectorQuantizer, tokens: BranchTokens) -> torch.Tensor:
        dev = quantize.codebook.weight.device
        pos = torch.from_numpy(np.asarray(tokens.positions, dtype=np.int64)).to(dev)
        idx = torch.from_numpy(np.asarray(tokens.indices, dtype=np.int64)).to(dev)
        return demasker(pos, quantize.lookup(idx))

    @torch.no_grad()
    def decode_semantic(self, tokens: BranchTokens) -> torch.Tensor:
        """Semantic tokens → SSM logits [1, 20, H, W]."""
        return self.decoder_semantic(self._latents(self.demasker_semantic, self.quantize_semantic, tokens))

    @torch.no_grad()
    def decode_tokens(self, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens → (normalised image [1,3,H,W], SSM logits [1,20,H,W])."""
        sem_logits = self.decode_semantic(tokens.semantic)
        cond = logits_to_onehot(sem_logits)[:, :N_CLASSES]
        z = self._latents(self.demasker, self.quantize, tokens.image)
        return self.decoder(z, cond), sem_logits

    @torch.no_grad()
    def forward(self, image: torch.Tensor, semantic20: torch.Tensor, m_image: float = 1.0,
                m_semantic: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantised forward in memory: (normalised image, SSM logits)."""
        return self.decode_tokens(self.encode_tokens(image, semantic20, m_image, m_semantic))
