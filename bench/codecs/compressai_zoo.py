"""CompressAI's image model zoo as bench codecs, with real bitstreams.

One adapter for the six zoo architectures, each trained for ``mse`` or ``ms-ssim``
(one card per pair: ``cheng2020-anchor`` is MSE-trained, ``cheng2020-anchor-msssim`` its
MS-SSIM twin). Knob: the zoo quality index (1–8; 1–6 for Cheng2020), higher = more bits.

Weights come from local files only: CompressAI's own file names (``model_urls`` of
``compressai.zoo.image``, e.g. ``cheng2020-anchor-3-e49be189.pth.tar``) in ``--weights-dir``,
``$BENCH_WEIGHTS_DIR`` or the torch hub cache where CompressAI downloads them; each file
is checked against the sha256 prefix in its name (torch.hub's and CompressAI's rule), so a
re-trained model saved as ``<zoo stem>-<its sha256[:8]>.pth.tar`` is accepted too (and
recorded as not official). A user's own checkpoints (CompressAI's training script output,
``{"state_dict": …}`` or a plain state_dict) go through ``params.checkpoint`` as a mapping
``{quality: path}``; N and M are inferred from the state dict (``from_state_dict``).

Bitstream: ``model.compress`` on the image padded with zeros to a multiple of 64 (centred,
``compressai.ops.compute_padding``, as CompressAI's ``eval_model``), its strings as parts
``y`` (and ``z``), plus a 10-byte ``header`` (:mod:`.compressai_bitstream`); ``decode``
calls ``model.decompress`` on those bytes alone and crops back. Entropy coding is
CompressAI's rANS coder on the CPU; the networks run with cuDNN in deterministic mode. The
models with a hyperprior recompute the entropy parameters with the network at the
receiver, so they decode only on the device type (CPU / CUDA) that encoded — the header
records it and a mismatch is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, get_args

import numpy as np

from bench.modes import TrainedFor
from bench.runtime.devices import resolve_device
from bench.runtime.weights import WeightSpec, find, hash_in_name, load_state_dict, resolve, sha256_file, weights_dirs

from ..errors import CodecError, ConfigError, WeightsError
from . import compressai_bitstream as bitstream
from .base import Codec, Encoded, RateKnob, Requirement, Semantics, check_rgb_uint8

STRIDE = 64  # 2**6: the total down-sampling of the analysis + hyper-analysis transforms
METRICS: tuple[str, ...] = get_args(TrainedFor)
CHECKPOINT_KEYS = ("network", "state_dict", "model_state_dict")  # as compressai's eval_model reads them


@dataclass(frozen=True)
class Architecture:
    """Facts about a zoo architecture: class name in ``compressai.models``, qualities, latents."""

    model_class: str
    max_quality: int
    latents: int  # 1: y only (factorized prior); 2: y and the hyper-latent z
    autoregressive: bool  # context model: decoding is sequential (papers: see the cards)


ARCHITECTURES: dict[str, Architecture] = {
    "bmshj2018-factorized": Architecture("FactorizedPrior", 8, 1, False),
    "bmshj2018-hyperprior": Architecture("ScaleHyperprior", 8, 2, False),
    "mbt2018-mean": Architecture("MeanScaleHyperprior", 8, 2, False),
    "mbt2018": Architecture("JointAutoregressiveHierarchicalPriors", 8, 2, True),
    "cheng2020-anchor": Architecture("Cheng2020Anchor", 6, 2, True),
    "cheng2020-attn": Architecture("Cheng2020Attention", 6, 2, True),
}


def zoo_spec(architecture: str, metric: str, quality: int) -> WeightSpec:
    """The zoo file of one model: CompressAI's file name, hash prefix and URL (needs compressai)."""
    from compressai.zoo.image import model_urls

    url = model_urls[architecture][metric][quality]
    filename = url.rsplit("/", 1)[1]
    return WeightSpec(name=f"CompressAI {architecture} ({metric}) q{quality}", filename=filename,
                      sha256=hash_in_name(filename), source=url, hashed_name=True)


@contextlib.contextmanager
def cudnn_deterministic() -> Iterator[None]:
    """cuDNN in deterministic mode, no autotuning (as CompressAI's eval_model sets it), restored
    after: the receiver must recompute the sender's entropy parameters bit for bit."""
    import torch

    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def _parse_checkpoints(checkpoint: Any, name: str) -> dict[int, str]:
    if checkpoint is None:
        return {}
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        raise ConfigError(f"{name}: params.checkpoint must map quality to file, got {checkpoint!r}",
                          f"e.g. --param '{name}.checkpoint={{3: /ckpt/checkpoint_best_loss.pth.tar}}'")
    out: dict[int, str] = {}
    for key, path in checkpoint.items():
        try:
            q = int(key)
        except (TypeError, ValueError):
            q = 0
        if not 0 < q < 256 or not isinstance(path, (str, Path)):
            raise ConfigError(f"{name}: params.checkpoint entry {key!r}: {path!r} is not quality (1–255): path",
                              f"e.g. --param '{name}.checkpoint={{3: /ckpt/checkpoint_best_loss.pth.tar}}'")
        out[q] = str(Path(path).expanduser())
    return dict(sorted(out.items()))


class CompressAIZooCodec(Codec):
    """A CompressAI zoo model (or a user's checkpoint of its architecture) as a codec.

    Params: ``architecture`` (a key of :data:`ARCHITECTURES`), ``metric`` (mse | ms-ssim:
    which zoo training), ``checkpoint`` (``{quality: path}`` of own checkpoints; default:
    the zoo files), ``device`` (auto: CUDA when present | cpu | cuda), ``weights_dir``
    (``--weights-dir``), ``name`` (default: the architecture, ``-msssim`` appended for ms-ssim).
    """

    name = "compressai-zoo"
    version = "1"
    checkpoint_per_rate: ClassVar[bool] = True  # {quality: path}; a sweep maps --rates to each file
    rate_knob = RateKnob("quality", tuple(range(1, 9)), higher_is_better=True,
                                             minimum=1, maximum=8)

    def __init__(self, architecture: str, metric: TrainedFor = "mse", checkpoint: Any = None, device: str = "auto",
                 weights_dir: str | None = None) -> None:
        if architecture not in ARCHITECTURES:
            raise ConfigError(f"compressai: unknown architecture {architecture!r}",
                              f"use one of {', '.join(ARCHITECTURES)}")
        if metric not in METRICS:
            raise ConfigError(f"compressai: metric {metric!r} is not mse or ms-ssim", "fix params.metric")
        if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
            raise ConfigError(f"compressai: device {device!r} is not auto/cpu/cuda", "fix params.device")
        self.arch = ARCHITECTURES[architecture]
        self.architecture, self.metric, self.device_name = architecture, metric, str(device)
        # a card's name replaces this default after construction (bench.registry.catalog)
        self.name = architecture + ("-msssim" if metric == "ms-ssim" else "")
        self.checkpoints = _parse_checkpoints(checkpoint, self.name)
        self.weights_dir = weights_dir
        qualities = tuple(self.checkpoints) or tuple(range(1, self.arch.max_quality + 1))
        self.rate_knob = RateKnob("quality", qualities, higher_is_better=True,
                                  minimum=1, maximum=255 if self.checkpoints else self.arch.max_quality)
        self._models: dict[int, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # loaded networks are not shipped to workers
        return {**self.__dict__, "_models": {}}

    # -- weights -------------------------------------------------------------------------
    def spec(self, quality: int) -> WeightSpec:
        """The :class:`WeightSpec` of ``quality``: the user's checkpoint or the zoo file."""
        if self.checkpoints:
            if quality not in self.checkpoints:
                raise WeightsError(f"{self.name}: params.checkpoint has no quality {quality} "
                                   f"(it has {', '.join(map(str, self.checkpoints))})",
                                   f"add it to params.checkpoint, or run --rates {self.name}="
                                   + ",".join(map(str, self.checkpoints)))
            path = self.checkpoints[quality]
            # hashed_name: a hash prefix in the user's file name is checked by resolve(), as for zoo files
            return WeightSpec(name=f"{self.name} q{quality} checkpoint", filename=Path(path).name, hashed_name=True)
        return zoo_spec(self.architecture, self.metric, quality)

    def weights_path(self, quality: int) -> Path | None:
        """The local file for ``quality`` (no hash check), or None."""
        return find(self.spec(quality), self.checkpoints.get(quality), self.weights_dir)

    def _qualities(self) -> list[int]:
        rates = (getattr(self, "card", None) or {}).get("rates") or self.rate_knob.values
        return [int(q) for q in rates]

    def requirements(self) -> list[Requirement]:
        try:
            import compressai.ans  # noqa: F401  (the C++ entropy coder)
            import compressai.zoo.image  # noqa: F401
        except ImportError as err:
            return [Requirement("package", "compressai", False,
                                f"cannot import {err.name}: pip install compressai (1.2.8, with its compiled "
                                "entropy coder compressai.ans)")]
        found, missing = {}, []
        for q in self._qualities():
            path = self.weights_path(q)
            if path is None:
                missing.append(q)
            else:
                found[q] = path
        what = "checkpoints" if self.checkpoints else "CompressAI zoo files"
        if self.checkpoints:
            gone = "; ".join(f"q{q}: {self.checkpoints[q]} does not exist" for q in missing)
            return [Requirement("weights", what, not missing,
                                gone or ", ".join(f"q{q}={p}" for q, p in found.items()))]
        files = ", ".join(f"q{q} {self.spec(q).filename}" for q in missing)
        where = (f"not in {', '.join(str(d) for d in weights_dirs(self.weights_dir))}: {files}; "
                 f"CompressAI publishes them at {self.spec(missing[0]).source.rsplit('/', 1)[0]}/<file name>"
                 if missing else "")
        if not found:
            return [Requirement("weights", what, False, where + " (or set params.checkpoint {quality: path})")]
        detail = ", ".join(f"q{q}={p}" for q, p in found.items())
        return [Requirement("weights", what, True, detail + (f" ({where})" if where else ""))]

    def _weights_identity(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for q in self._qualities():
            try:
                path = self.weights_path(q)
            except (ImportError, WeightsError):
                path = None
            if path is None:
                continue
            digest = sha256_file(path)
            official = None if self.checkpoints else digest.startswith(self.spec(q).sha256 or "-")
            out[str(q)] = {"file": path.name, "sha256": digest, "official": official}
        return out

    def params(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "metric": self.metric,
            "weights": "checkpoint" if self.checkpoints else "zoo",
            "files": self._weights_identity(),
            "device": self.device.split(":")[0],  # cpu | cuda: results differ between the types
            "padding": f"zeros, centred, to multiples of {STRIDE} (compressai.ops.compute_padding)",
            "bitstream_version": bitstream.FORMAT_VERSION,
        }

    # -- model -----------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return resolve_device(self.device_name)

    def model(self, quality: int) -> Any:
        """The network of ``quality``: loaded (weights_only), CDFs updated, on the device."""
        if quality not in self._models:
            self._models[quality] = self._load(quality)
        return self._models[quality]

    def _load(self, quality: int) -> Any:
        import torch
        from compressai import models
        from compressai.zoo.pretrained import load_pretrained

        spec = self.spec(quality)
        path = resolve(spec, self.checkpoints.get(quality), self.weights_dir)  # checks the name's hash prefix
        obj = load_state_dict(path)
        for key in CHECKPOINT_KEYS:  # CompressAI's training script saves {"state_dict": …, "epoch": …}
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        if not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise WeightsError(f"{path} holds no state_dict of tensors (keys: {', '.join(list(obj)[:6])})",
                               "give CompressAI's checkpoint ({'state_dict': …}) or model.state_dict()")
        cls = getattr(models, self.arch.model_class)
        try:
            net = cls.from_state_dict(load_pretrained(obj))
        except (KeyError, RuntimeError, ValueError, IndexError) as err:
            first = str(err).strip().splitlines()[0][:300]
            raise WeightsError(f"{path} does not hold a {self.architecture} model ({self.arch.model_class}): {first}",
                               "use the card of the checkpoint's architecture, or a checkpoint of this one") from None
        net.update(force=True)
        return net.to(self.device).eval()

    # -- the work ------------------------------------------------------------------------
    def encode(self, image: np.ndarray, rate: Any, *, semantics: Semantics | None = None) -> Encoded:
        """``image`` H×W×3 uint8 → parts ``header``, ``y`` (, ``z``) at zoo quality ``rate``."""
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        check_rgb_uint8(image)
        quality = int(self.rate_knob.parse(str(rate)))
        net = self.model(quality)
        h, w = image.shape[:2]
        x = torch.from_numpy(image.copy()).permute(2, 0, 1).unsqueeze(0).float().div(255)
        pad, _ = compute_padding(h, w, min_div=STRIDE)
        with torch.no_grad(), cudnn_deterministic():
            out = net.compress(F.pad(x.to(self.device), pad, mode="constant", value=0))
        header = bitstream.Header(quality, h, w, (int(out["shape"][0]), int(out["shape"][1])), self.device.startswith("cuda"))
        parts = bitstream.pack(header, out["strings"])
        strings = sum(len(parts[n]) for n in bitstream.LATENTS[: self.arch.latents])
        # CompressAI's eval_model bpp (strings only, no header), beside the real one
        return Encoded(parts=parts, notes={"bpp_compressai": 8.0 * strings / (h * w)})

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        """The parts alone → H×W×3 uint8 RGB (``model.decompress``, cropped back)."""
        import torch
        import torch.nn.functional as F
        from compressai.ops import compute_padding

        header, strings = bitstream.unpack(parts, self.arch.latents)
        on_cuda = self.device.startswith("cuda")
        if self.arch.latents > 1 and header.on_cuda != on_cuda:
            coded, here = ("cuda", "cpu") if header.on_cuda else ("cpu", "cuda")
            raise CodecError(f"{self.name}: encoded on {coded}, this decoder runs on {here}; the entropy "
                             "parameters are recomputed by the network and differ between device types",
                             f"decode with params.device: {coded}")
        net = self.model(header.quality)
        with torch.no_grad(), cudnn_deterministic():
            x_hat = net.decompress(strings, header.shape)["x_hat"]
        _, unpad = compute_padding(header.height, header.width, min_div=STRIDE)
        x_hat = F.pad(x_hat, unpad)
        if tuple(x_hat.shape[-2:]) != (header.height, header.width):
            raise CodecError(f"{self.name}: decoded {tuple(x_hat.shape[-2:])}, header says "
                             f"{header.height}x{header.width}", "the bytes are corrupt")
        return x_hat[0].mul(255).clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
