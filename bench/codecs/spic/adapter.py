"""The SPIC codec adapter (Pezone et al., "Semantic-Preserving Image Coding based on
Conditional Diffusion Models"; official code frapez1/SPIC @ 2cce6c5).

Sender (two byte parts, both counted in bpp):
  ``labels``: the 19-class Cityscapes label map (trainIds, 255 = void), coded losslessly
  by the ``label_coder`` (``runs`` = this project's context-model run coder, ``jpegxl``,
  ``png``; the paper used FLIF, which has no package here).
  ``coarse``: the image area-downsampled 4× (256×512 → 64×128) exactly as the official
  ``image_sample.py`` ``preprocess_input`` makes it: uint8/127.5 − 1 in float32, (x+1)/2,
  ``F.interpolate(mode="area")`` in float32, ×255 and cv2.imwrite's rounding (nearest,
  ties to even) — on the CPU — and coded with BPG ``-q Q`` 4:2:0 8-bit YCbCr (the rate
  knob Q; the paper's point is Q = 35), or with a classical stand-in when BPG is not
  installed (see ``STAND_INS``).
Paper rate (``bpp_paper``, beside the real bpp): the official ``evaluate/metrics.py`` sizes
the ``.bpg`` that ``save_compressed`` writes of a BILINEAR downsample of the image
(``F.interpolate(mode="bilinear")``, then torchvision ``save_image``'s rounding), not the
area-downsampled image the model receives, plus the label map's FLIF file; FLIF has no
package here, so the label term is the label part's bytes: ``bpp_paper_coarse`` +
``bpp_paper_labels``, each 8 · bytes / (H · W).
Receiver: the SPADE super-resolution U-Net, sampled with the official respaced schedule
(20 steps, t = 192 … 0) from the upsampled decoded coarse image, classifier-free guidance
s = 1.5, seeded noise. Output: uint8 RGB at the input size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets.size import Size
from bench.datasets.size import parse_size as _parse_size
from bench.modes import LabelCoderName, Precision
from bench.runtime.devices import resolve_device
from bench.runtime.weights import find, sha256_file

from ...errors import CodecError, ConfigError
from ..base import Codec, Encoded, RateKnob, Requirement, Semantics, check_rgb_uint8
from . import checkpoint as ckpt
from . import diffusion
from .labelcoder import LABEL_CODERS, JpegxlLabelCoder, RunLabelCoder, make_label_coder
from .unet import UNetConfig, one_hot_labels

CLASS_SET = "cityscapes19"
LABELS_PART, COARSE_PART = "labels", "coarse"


def _clip(v: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, v))


#: Stand-ins for BPG: registry codec, its params, and Q → that codec's knob (documented,
#: not calibrated against BPG). HEIC is HEVC intra like BPG: libheif's x265 plugin maps
#: quality q to CRF 50 − q/2, so q = 100 − 2·Q gives CRF ≈ Q. WebP and JPEG reuse that
#: linear map (a rough equal-quality guess); JPEG 2000 targets the rate BPG Q35 takes in
#: the paper (≈0.86 bpp at 64×128), halving per +6 Q as HEVC's quantiser step doubles.
STAND_INS: dict[str, tuple[dict[str, Any], Callable[[int], Any], str]] = {
    "heic": ({"chroma": "420"}, lambda q: int(_clip(100 - 2 * q, 1, 100)), "quality = clip(100 − 2·Q, 1, 100)"),
    "webp": ({}, lambda q: int(_clip(100 - 2 * q, 0, 100)), "quality = clip(100 − 2·Q, 0, 100)"),
    "jpeg": ({"subsampling": "420"}, lambda q: int(_clip(100 - 2 * q, 1, 100)), "quality = clip(100 − 2·Q, 1, 100)"),
    "jpeg2000": ({}, lambda q: round(_clip(0.86 * 2 ** ((35 - q) / 6), 0.005, 24.0), 4),
                 "bpp = 0.86 · 2^((35 − Q)/6)"),
}


def parse_size(size: Any) -> Size:
    """``"256x512"`` or ``[256, 512]`` → (height, width): :func:`bench.datasets.size.parse_size`, order HxW."""
    return _parse_size(size, "HxW", what="spic: size")


class SpicCodec(Codec):
    """SPIC. Knob: BPG quantiser ``q`` 0–51 of the coarse image (LOWER = more bits).

    Params: ``checkpoint`` (path of the U-Net state_dict; else ``$SPIC_CHECKPOINT``);
    ``size`` "256x512" (input H×W); ``coarse_factor`` 4; ``label_coder`` runs|jpegxl|png;
    ``coarse_codec`` bpg|heic|webp|jpeg|jpeg2000|auto (auto: BPG if installed, else the
    first available stand-in); ``device`` auto|cpu|cuda; ``precision`` fp32|fp16 (CUDA
    autocast); ``seed`` (a fresh generator per image); ``guidance`` (1.5);
    ``timestep_respacing`` ("100"), ``max_iter_time`` (200), ``diffusion_steps`` (1000);
    U-Net shape: ``width`` (256), ``channel_mult``, ``num_res_blocks``, ``attention_ds``,
    ``num_head_channels``, ``spade_hidden``, ``norm_groups``.
    """

    name = "spic"
    version = "spic-2"  # 2: the official float32 area downsampling (was an exact box mean); bpp_paper
    rate_knob = RateKnob("q", (45, 40, 35, 30), higher_is_better=False, minimum=0, maximum=51)
    needs_semantics = True

    def __init__(self, checkpoint: str | None = None, size: Any = "256x512", coarse_factor: int = 4,
                 label_coder: LabelCoderName = "runs", coarse_codec: str = "bpg", device: str = "auto",
                 precision: Precision = "fp32", seed: int = 0, guidance: float = 1.5,
                 timestep_respacing: str = "100", max_iter_time: int = 200, diffusion_steps: int = 1000,
                 width: int = 256, channel_mult: Any = (1, 1, 2, 2, 4, 4), num_res_blocks: int = 2,
                 attention_ds: Any = (8, 16, 32), num_head_channels: int = 64, spade_hidden: int = 128,
                 norm_groups: int = 32, weights_dir: str | None = None) -> None:
        self.height, self.width = parse_size(size)
        self.coarse_factor = int(coarse_factor)
        if self.coarse_factor < 1 or self.height % self.coarse_factor or self.width % self.coarse_factor:
            raise ConfigError(f"spic: size {self.height}x{self.width} is not divisible by coarse_factor "
                              f"{self.coarse_factor}", "use the official 256x512 with coarse_factor 4")
        self.config = UNetConfig(num_channels=int(width), channel_mult=tuple(int(m) for m in channel_mult),
                                 num_res_blocks=int(num_res_blocks), attention_ds=tuple(int(a) for a in attention_ds),
                                 num_head_channels=int(num_head_channels), spade_hidden=int(spade_hidden),
                                 norm_groups=int(norm_groups))
        bad = [m for m in self.config.channel_mult if (m * self.config.num_channels) % self.config.norm_groups]
        if bad or self.config.num_channels % self.config.num_head_channels:
            raise ConfigError(f"spic: width {width} does not fit norm_groups {norm_groups} / num_head_channels "
                              f"{num_head_channels} at every level", "use a multiple of 64 (official: 256)")
        step = self.config.downsample_factor
        if self.height % step or self.width % step:
            raise ConfigError(f"spic: size {self.height}x{self.width} is not a multiple of {step} "
                              f"(the U-Net has {len(self.config.channel_mult)} levels)", "use 256x512")
        if label_coder not in LABEL_CODERS:
            raise ConfigError(f"spic: unknown label_coder {label_coder!r}", f"use one of {sorted(LABEL_CODERS)}")
        self.label_coder_name = label_coder
        self.label_coder = make_label_coder(label_coder)
        if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
            raise ConfigError(f"spic: device {device!r}", "use auto, cpu, cuda or cuda:N")
        if precision not in ("fp32", "fp16"):
            raise ConfigError(f"spic: precision {precision!r}", "use fp32 or fp16")
        if float(guidance) < 1.0:
            raise ConfigError(f"spic: guidance {guidance} < 1", "use s ≥ 1 (1 = no guidance; official 1.5)")
        self.device_name, self.precision = device, precision
        self.seed, self.guidance = int(seed), float(guidance)
        self.respacing, self.max_iter_time, self.diffusion_steps = str(timestep_respacing), int(max_iter_time), \
            int(diffusion_steps)
        base = diffusion.linear_betas(self.diffusion_steps)
        kept = diffusion.official_timesteps(self.diffusion_steps, self.respacing, self.max_iter_time)
        if not kept:
            raise ConfigError(f"spic: no timestep ≤ max_iter_time {self.max_iter_time}", "raise max_iter_time")
        self.schedule = diffusion.RespacedSchedule.from_base(base, kept)
        self.checkpoint_param, self.weights_dir = checkpoint, weights_dir
        self._model = None
        self._setup_coarse(str(coarse_codec))

    # -- configuration ----------------------------------------------------------------
    def _setup_coarse(self, choice: str) -> None:
        from bench.registry import catalog

        choices = ["bpg", *STAND_INS, "auto"]
        if choice not in choices:
            raise ConfigError(f"spic: coarse_codec {choice!r}", f"use one of {choices}")
        order = ["bpg", *STAND_INS] if choice == "auto" else [choice]
        for name in order:
            params = {"chroma": "420", "color_space": "ycbcr"} if name == "bpg" else STAND_INS[name][0]
            codec = catalog.make_codec(name, **params)
            if choice != "auto" or not codec.missing():
                break
        else:  # auto and nothing available: report BPG as the missing requirement
            name, codec = "bpg", catalog.make_codec("bpg", chroma="420", color_space="ycbcr")
        self.coarse_name, self.coarse = name, codec
        self.stand_in = name != "bpg"
        label = f"BPG stand-in: {name}" if self.stand_in else "BPG"
        self.version = f"spic-2/coarse={label} ({codec.version})/labels={self.label_coder_name}"
        self.display_name = f"SPIC ({label})"

    def coarse_rate(self, q: Any) -> Any:
        """The coarse codec's knob value for BPG quantiser ``q``."""
        q = int(q)
        return q if not self.stand_in else STAND_INS[self.coarse_name][1](q)

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def coarse_size(self) -> tuple[int, int]:
        return self.height // self.coarse_factor, self.width // self.coarse_factor

    def checkpoint_path(self) -> Path | None:
        return find(ckpt.SPEC, self.checkpoint_param, self.weights_dir)

    def requirements(self) -> list[Requirement]:
        reqs = list(self.coarse.requirements())
        path = self.checkpoint_path()
        reqs.append(Requirement("weights", "SPIC checkpoint", path is not None, str(path) if path else
                                f"run `bench fetch spic-cityscapes` ({ckpt.SPEC.filename}), or set "
                                f"params.checkpoint or ${ckpt.ENV_VAR} to a model/ema_*.pt state_dict; "
                                f"get it from {ckpt.SOURCE}"))
        if isinstance(self.label_coder, RunLabelCoder):
            ok = RunLabelCoder.available()
            reqs.append(Requirement("package", "compressai (rANS)", ok, "installed" if ok else "pip install compressai"))
        if isinstance(self.label_coder, JpegxlLabelCoder):
            ok = JpegxlLabelCoder.available()
            reqs.append(Requirement("package", "imagecodecs[JPEGXL]", ok, "installed" if ok else "pip install imagecodecs"))
        return reqs

    def params(self) -> dict[str, Any]:
        path = self.checkpoint_path()
        out: dict[str, Any] = {
            "size": f"{self.height}x{self.width}", "coarse_size": "{}x{}".format(*self.coarse_size),
            "label_coder": self.label_coder.describe(),
            "coarse_codec": {"codec": self.coarse_name, "version": self.coarse.version,
                             "params": self.coarse.params(), "stand_in_for_bpg": self.stand_in},
            "seed": self.seed, "guidance": self.guidance, "diffusion_steps": self.diffusion_steps,
            "timestep_respacing": self.respacing, "max_iter_time": self.max_iter_time,
            "timesteps": list(self.schedule.timesteps), "unet": self.config.as_dict(), "precision": self.precision,
            "checkpoint": path.name if path else None,
            "checkpoint_sha256": sha256_file(path)[:16] if path else None,
        }
        if self.stand_in:
            out["coarse_codec"]["q_mapping"] = STAND_INS[self.coarse_name][2]
        if path:
            out["checkpoint_kind"] = ckpt.describe_file(path)
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "label": self.display_name, "params": self.params()}

    # -- sender ---------------------------------------------------------------------------
    def _unit_tensor(self, image: np.ndarray) -> Any:
        """The official dataset tensor (1×3×H×W float32 in [−1, 1]: uint8 / 127.5 − 1)."""
        import torch

        x = image.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

    def downsample(self, image: np.ndarray) -> np.ndarray:
        """The coarse image the model receives, as the official code makes it: float32
        ``F.interpolate(((x + 1) / 2), coarse size, mode="area")`` of the [−1, 1] image, ×255
        in float32, rounded like cv2.imwrite (nearest, ties to even), clipped to 0..255."""
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            unit = (self._unit_tensor(image) + 1.0) / 2.0
            low = F.interpolate(unit, self.coarse_size, mode="area")[0].permute(1, 2, 0).numpy()
        return np.clip(np.rint(low * np.float32(255)), 0, 255).astype(np.uint8)

    def paper_coarse(self, image: np.ndarray) -> np.ndarray:
        """The image the official evaluation sizes (``image_sample.py`` for ``down+bpg``):
        ``F.interpolate(x, coarse size, mode="bilinear")`` of the [−1, 1] image, (y + 1) / 2,
        then torchvision ``save_image``'s ×255 + 0.5, clamp, truncate to uint8."""
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            low = (F.interpolate(self._unit_tensor(image), self.coarse_size, mode="bilinear") + 1.0) / 2.0
            out = low[0].mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8)
        return np.ascontiguousarray(out.numpy())

    def paper_rate(self, image: np.ndarray, rate: Any, label_bytes: int) -> dict[str, float]:
        """``bpp_paper`` (and its terms) as SPIC's ``evaluate/metrics.py`` measures it: the
        coarse codec's bytes of :meth:`paper_coarse` plus the label bytes, 8 · bytes / (H · W)."""
        pixels = self.height * self.width
        coarse = self.coarse.encode(self.paper_coarse(image), self.coarse_rate(rate)).parts["image"]
        b_c, b_l = 8.0 * len(coarse) / pixels, 8.0 * label_bytes / pixels
        return {"bpp_paper": b_c + b_l, "bpp_paper_coarse": b_c, "bpp_paper_labels": b_l}

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Semantics | None = None) -> Encoded:
        check_rgb_uint8(image)
        self.rate_knob.check(rate)
        if image.shape[:2] != self.size:
            raise CodecError(f"spic: input is {image.shape[0]}x{image.shape[1]}, the model works at "
                             f"{self.height}x{self.width}",
                             "use a dataset with the 256x512 Cityscapes protocol, or set params.size to match "
                             "the checkpoint")
        if semantics is None:
            raise CodecError("spic: no label map given", "SPIC needs semantics (ground truth or a segmenter)")
        if semantics.class_set != CLASS_SET:
            raise CodecError(f"spic: label map has class set {semantics.class_set!r}, the model uses {CLASS_SET}",
                             "use a Cityscapes-19 dataset (trainIds) or a Cityscapes segmenter")
        if semantics.labels.shape != self.size:
            raise CodecError(f"spic: label map is {semantics.labels.shape}, image is {self.size}",
                             "resize labels with nearest neighbour to the image size")
        labels = self.label_coder.encode(np.ascontiguousarray(semantics.labels, dtype=np.uint8))
        coarse = self.coarse.encode(self.downsample(image), self.coarse_rate(rate)).parts
        return Encoded({LABELS_PART: labels, COARSE_PART: coarse["image"]},
                       notes={"semantics_source": semantics.source, "label_coder": self.label_coder_name,
                              "coarse_codec": self.coarse_name if self.stand_in else "bpg",
                              "coarse_knob": self.coarse_rate(rate),
                              **self.paper_rate(image, rate, len(labels))})

    # -- receiver -------------------------------------------------------------------------
    def device(self) -> str:
        return resolve_device(self.device_name)

    def model(self):
        """The U-Net, loaded once (strictly) from the checkpoint."""
        if self._model is None:
            path = ckpt.resolve_checkpoint(self.checkpoint_param, self.weights_dir)
            self._model = ckpt.load_model(path, self.config, self.device())
        return self._model

    def decode_parts(self, parts: Mapping[str, bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(label map H×W uint8, decoded coarse image h×w×3 uint8) from the parts."""
        missing = [p for p in (LABELS_PART, COARSE_PART) if not parts.get(p)]
        if missing:
            raise CodecError(f"spic: parts {missing} missing (got {sorted(parts)})",
                             "pass the parts returned by encode unchanged")
        labels = self.label_coder.decode(bytes(parts[LABELS_PART]))
        if labels.shape != self.size:
            raise CodecError(f"spic: decoded label map is {labels.shape}, expected {self.size}",
                             "encode and decode with the same size setting")
        coarse = self.coarse.decode({"image": bytes(parts[COARSE_PART])})
        if coarse.shape[:2] != self.coarse_size:
            raise CodecError(f"spic: coarse image is {coarse.shape[:2]}, expected {self.coarse_size}",
                             "encode and decode with the same size and coarse_factor")
        return labels, coarse

    def reconstruct(self, labels: np.ndarray, coarse: np.ndarray,
                    on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Run the diffusion receiver: H×W×3 uint8 from the label map and the coarse image."""
        import torch
        import torch.nn.functional as F

        model, dev = self.model(), self.device()
        low = torch.from_numpy(np.array(coarse)).permute(2, 0, 1)[None].float().div(127.5).sub(1.0).to(dev)
        onehot = one_hot_labels(torch.from_numpy(labels.astype(np.int64))[None], self.config.num_classes).to(dev)
        x_start = F.interpolate(low, size=self.size, mode="bilinear")

        def denoise(x, t, lab):
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.precision == "fp16" and dev != "cpu"):
                return model(x, t, lab, low.expand(x.shape[0], -1, -1, -1)).float()

        generator = torch.Generator().manual_seed(self.seed)
        out = diffusion.sample(denoise, x_start, onehot, self.schedule, guidance=self.guidance,
                               generator=generator, on_step=on_step)
        # as torchvision.utils.save_image: [-1, 1] → ×255, +0.5, clamp, truncate
        img = ((out[0] + 1.0) / 2.0).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
        return np.ascontiguousarray(img.permute(1, 2, 0).cpu().numpy())

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        labels, coarse = self.decode_parts(parts)
        return self.reconstruct(labels, coarse)
