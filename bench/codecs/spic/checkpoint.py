"""SPIC checkpoints: plain state_dicts of the SR U-Net, loaded strictly from a local file.

The official training (frapez1/SPIC, guided-diffusion's TrainLoop) saves
``model{step:06d}.pt`` (raw weights) and ``ema_0.9999_{step:06d}.pt`` (EMA weights, what
one samples with), each a plain ``state_dict`` without wrapper key. Nothing is downloaded:
the file comes from the ``checkpoint`` param, ``$SPIC_CHECKPOINT``, or a weights directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from bench.runtime.weights import WeightSpec, check_keys, load_state_dict, resolve

from ...errors import WeightsError
from .unet import SpadeSRUNet, UNetConfig

ENV_VAR = "SPIC_CHECKPOINT"
SOURCE = ("the Cityscapes checkpoint linked from https://github.com/frapez1/SPIC (README, 'Pre-trained "
          "Model', a Google-Drive file), or your own training run of that code")
SPEC = WeightSpec(name="SPIC SR U-Net", filename="spic_cityscapes.pt", env=ENV_VAR, source=SOURCE)
_NAME_RE = re.compile(r"^(?:model|ema_(?P<rate>[0-9.]+)_)(?P<step>\d{6})\.pt$")


def describe_file(path: Path | str) -> dict[str, object]:
    """What the official file name says: ``{"kind": "ema"|"model"|"other", "step": int|None, "ema_rate": …}``."""
    m = _NAME_RE.match(Path(path).name)
    if not m:
        return {"kind": "other", "step": None}
    info: dict[str, object] = {"kind": "ema" if m.group("rate") else "model", "step": int(m.group("step"))}
    if m.group("rate"):
        info["ema_rate"] = float(m.group("rate"))
    return info


def resolve_checkpoint(path: Path | str | None = None, weights_dir: Path | str | None = None) -> Path:
    """The local checkpoint file (``path``, ``$SPIC_CHECKPOINT``, weights dirs) or :class:`WeightsError`."""
    return resolve(SPEC, path, weights_dir, check_hash=False)


def load_model(path: Path | str, config: UNetConfig, device: str | torch.device = "cpu") -> SpadeSRUNet:
    """Build the U-Net of ``config`` and load ``path`` strictly (``weights_only=True``).

    Raises :class:`WeightsError` listing missing / unexpected keys, or tensors whose shapes
    differ from the architecture (a width or class-count mismatch).
    """
    state = load_state_dict(path)
    model = SpadeSRUNet(config)
    expected = model.state_dict()
    check_keys(set(expected), set(state), f"SPIC checkpoint {path}")
    wrong = [f"{k} {tuple(state[k].shape)}≠{tuple(v.shape)}" for k, v in expected.items()
             if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise WeightsError(
            f"SPIC checkpoint {path}: {len(wrong)} tensors have the wrong shape: "
            + ", ".join(wrong[:8]) + (f" … (+{len(wrong) - 8})" if len(wrong) > 8 else ""),
            f"the file does not fit the configured U-Net {config.as_dict()}: set the codec's "
            "width / channel_mult params to those it was trained with")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def save_random_checkpoint(path: Path | str, config: UNetConfig, seed: int = 0, scale: float = 0.02) -> Path:
    """Write a random-initialised U-Net of ``config`` as a plain state_dict (for tests and
    smoke runs; it reconstructs nothing meaningful). Zero-initialised output convs are also
    randomised (× ``scale``) so that the network is not the identity."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SpadeSRUNet(config)
    gen = torch.Generator().manual_seed(seed)
    state = {k: (v if v.abs().sum() > 0 else torch.randn(v.shape, generator=gen) * scale)
             for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
