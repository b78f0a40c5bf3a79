"""A live ``torch.nn.Module`` (a model being trained) as a codec, keyed by a hash of its state.

    from bench import evaluate
    from bench.codecs import from_module

    rows = evaluate(from_module(net, name="my-net"), "kodak", metrics=["psnr"])
    rows = evaluate(net, "kodak", metrics=["psnr"])          # the same: a module is wrapped

The protocol is CompressAI's (``CompressionModel``); any module offering these two methods works:

* ``compress(x)``: ``x`` a float tensor 1×3×H×W in [0, 1] (H, W multiples of ``min_div``,
  zero-padded and centred as CompressAI's ``eval_model`` does) → ``{"strings": [[bytes], …],
  "shape": …}`` (one list of one string per latent, ``shape`` what ``decompress`` needs);
* ``decompress(strings, shape)`` → ``{"x_hat": tensor 1×3×H×W in [0, 1]}``.

A CompressAI model's entropy tables are refreshed with ``update(force=True)`` — on a deep copy,
never on the module given (whose buffers, under DDP, must stay the same on every rank). Each
evaluation freezes a copy (:meth:`ModuleCodec.frozen`): its identity holds the sha256 of the
module's parameters and buffers (:func:`state_sha256`), so results are cached exactly while the
weights are the same, and a changed model is always recomputed.

Bytes: the latent strings as parts ``y`` (, ``z``) with CompressAI's 10-byte ``header``
(:mod:`.compressai_bitstream`) when the model has at most two latents and a 2-int shape; else
parts ``s0``, ``s1`` … and a JSON ``header``. ``bpp_compressai`` (strings only) is noted beside.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import CodecError, ConfigError
from . import compressai_bitstream as bitstream
from .base import Codec, Encoded, RateKnob, Semantics, check_rgb_uint8

__all__ = ["ModuleCodec", "from_module", "is_module", "modules_of", "state_sha256"]


def is_module(obj: Any) -> bool:
    """True for a ``torch.nn.Module`` (without importing torch when nobody did)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def modules_of(obj: Any) -> list[Any]:
    """The ``nn.Module`` s an object holds in its attributes (directly or in a list / dict)."""
    found: list[Any] = []
    for value in getattr(obj, "__dict__", {}).values():
        items = value.values() if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else [value]
        found += [v for v in items if is_module(v)]
    return found


def state_sha256(*modules: Any) -> str:
    """sha256 over every parameter and buffer (names, dtypes, shapes, bytes) of ``modules``."""
    import torch

    h = hashlib.sha256()
    for i, module in enumerate(modules):
        state = module.state_dict(keep_vars=False)
        for key in sorted(state):
            value = state[key]
            h.update(f"{i}:{key}".encode())
            if isinstance(value, torch.Tensor):
                t = value.detach().to("cpu").contiguous()
                h.update(f"{t.dtype}{tuple(t.shape)}".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            else:
                h.update(repr(value).encode())
    return h.hexdigest()


def detached_copy(module: Any) -> Any:
    """A deep copy of ``module`` without its Lightning trainer (which is not copied along)."""
    trainer = getattr(module, "_trainer", None)
    memo = {id(trainer): None} if trainer is not None else {}
    return copy.deepcopy(module, memo)


class ModuleCodec(Codec):
    """``module`` (CompressAI's ``compress`` / ``decompress`` contract) as a one-rate-point codec.

    ``name``: the codec's name (default: the module's class name, lower case); ``rate``: the
    label of its one rate point (a model is one λ); ``min_div``: padding multiple (64, as
    CompressAI's zoo); ``device``: where it runs (default: where its parameters are).
    """

    name: str = "module"
    version: str = "module-1"
    rate_knob: RateKnob = RateKnob("model", ("live",), higher_is_better=True)

    def __init__(self, module: Any, *, name: str | None = None, rate: str = "live", min_div: int = 64,
                 device: str | None = None) -> None:
        if not is_module(module) or not callable(getattr(module, "compress", None)) \
                or not callable(getattr(module, "decompress", None)):
            raise ConfigError(f"{type(module).__name__} is not an nn.Module with compress() and decompress()",
                              "give a CompressAI model (CompressionModel) or a module with compress(x) -> "
                              "{'strings', 'shape'} and decompress(strings, shape) -> {'x_hat'}")
        if not isinstance(min_div, int) or min_div < 1:
            raise ConfigError(f"min_div={min_div!r} is not a positive integer", "use 64 for CompressAI models")
        self.module = module
        self.name = name or type(module).__name__.lower()
        self.rate = str(rate)
        self.rate_knob = RateKnob("model", (self.rate,), higher_is_better=True)
        self.min_div = min_div
        self.device_name = device
        self.state: str | None = None  # the state hash, once frozen

    # -- identity ------------------------------------------------------------------------
    def frozen(self) -> ModuleCodec:
        """A codec over a deep copy of the module as it is now: eval mode, CompressAI's entropy
        tables updated on the copy, its state hash computed (the live module is untouched)."""
        if self.state is not None:
            return self
        import torch

        with torch.no_grad():
            state = state_sha256(self.module)
            net = detached_copy(self.module)
            net.eval()
            if self.device_name:
                net.to(self.device_name)
            if callable(getattr(net, "update", None)):
                net.update(force=True)
        out = copy.copy(self)
        out.module, out.state = net, state
        return out

    def params(self) -> dict[str, Any]:
        return {"module": f"{type(self.module).__module__}.{type(self.module).__qualname__}",
                "state_sha256": self.state or state_sha256(self.module), "min_div": self.min_div,
                "device": self.device.split(":")[0]}

    @property
    def device(self) -> str:
        import torch

        if self.device_name:
            return self.device_name
        first = next(iter(self.module.parameters()), None)
        return str(first.device) if isinstance(first, torch.Tensor) else "cpu"

    # -- the work --------------------------------------------------------------------------
    def encode(self, image: np.ndarray, rate: Any, *, semantics: Semantics | None = None) -> Encoded:
        """``image`` H×W×3 uint8 → the module's strings as parts, with a header."""
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        from .compressai_zoo import cudnn_deterministic

        check_rgb_uint8(image)
        net = self.frozen().module if self.state is None else self.module
        h, w = image.shape[:2]
        x = torch.from_numpy(image.copy()).permute(2, 0, 1).unsqueeze(0).float().div(255)
        pad, _ = compute_padding(h, w, min_div=self.min_div)
        with torch.no_grad(), cudnn_deterministic():
            out = net.compress(F.pad(x.to(self.device), pad, mode="constant", value=0))
        strings, shape = out["strings"], out["shape"]
        shape = tuple(int(v) for v in shape) if isinstance(shape, (list, tuple, torch.Size)) else shape
        n_bytes = sum(len(s[0]) for s in strings)
        if len(strings) <= len(bitstream.LATENTS) and isinstance(shape, tuple) and len(shape) == 2:
            parts = bitstream.pack(bitstream.Header(1, h, w, shape, self.device.startswith("cuda")), strings)
        else:
            if any(len(s) != 1 for s in strings):
                raise CodecError(f"{self.name}: expected one string per latent, got {[len(s) for s in strings]}",
                                 "encode one image at a time")
            parts = {"header": json.dumps({"h": h, "w": w, "shape": shape}, separators=(",", ":")).encode()}
            parts.update({f"s{i}": bytes(s[0]) for i, s in enumerate(strings)})
        return Encoded(parts=parts, notes={"bpp_compressai": 8.0 * n_bytes / (h * w)})

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        """The parts alone → H×W×3 uint8 RGB (``module.decompress``, cropped back)."""
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        from .compressai_zoo import cudnn_deterministic

        net = self.frozen().module if self.state is None else self.module
        if parts.get("header", b"")[:1] == b"{":
            head = json.loads(parts["header"])
            h, w, shape = head["h"], head["w"], head["shape"]
            strings = [[parts[f"s{i}"]] for i in range(sum(1 for k in parts if k.startswith("s")))]
        else:
            header, strings = bitstream.unpack(parts, sum(1 for k in bitstream.LATENTS if k in parts))
            h, w, shape = header.height, header.width, header.shape
        with torch.no_grad(), cudnn_deterministic():
            x_hat = net.decompress(strings, shape)["x_hat"]
        _, unpad = compute_padding(h, w, min_div=self.min_div)
        x_hat = F.pad(x_hat, unpad)
        if tuple(x_hat.shape[-2:]) != (h, w):
            raise CodecError(f"{self.name}: decoded {tuple(x_hat.shape[-2:])}, header says {h}x{w}",
                             "the bytes are corrupt")
        return x_hat[0].mul(255).clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def from_module(model: Any, *, name: str | None = None, rate: str = "live", min_div: int = 64,
                device: str | None = None) -> ModuleCodec:
    """``model`` (an ``nn.Module`` with CompressAI's ``compress`` / ``decompress``) as a codec;
    each evaluation runs on a deep copy and is keyed by the sha256 of the model's state."""
    return ModuleCodec(model, name=name, rate=rate, min_div=min_div, device=device)
