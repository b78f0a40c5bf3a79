"""LPIPS v0.1 (Zhang et al. 2018) through the ``lpips`` package; lower is better.

Inputs are H×W×3 uint8 RGB, mapped to float32 in [-1, 1] (x / 127.5 − 1) as the
package expects. Per image: the spatially averaged LPIPS distance (≥ 0, typically
< 1). Dataset level: the mean over images.

Weights, never downloaded:

* the backbone — torchvision's ImageNet AlexNet / VGG16 / SqueezeNet 1.1 file under
  its torch hub name (``alexnet-owt-7be5be79.pth`` …), found through
  :mod:`bench.runtime.weights` (``--weights-dir``, ``$BENCH_WEIGHTS_DIR``, the env variable, the
  torch hub cache) and checked against the sha256 prefix in its name;
* the v0.1 linear calibration layers (``alex.pth`` …), which ship inside the lpips
  wheel (``lpips/weights/v0.1/``) and are checked against their published sha256.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.runtime import weights as W
from bench.runtime.devices import resolve_device

from ..codecs.base import Requirement
from ..errors import ConfigError, MetricError, WeightsError
from .base import Metric, Pair, State

log = logging.getLogger("bench")

LPIPS_VERSION = "0.1"
RANDOM_SEED = 0

BACKBONES: dict[str, W.WeightSpec] = {
    "alex": W.WeightSpec(
        "AlexNet ImageNet (torchvision IMAGENET1K_V1)", "alexnet-owt-7be5be79.pth", "7be5be79",
        env="BENCH_LPIPS_ALEX", source="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": W.WeightSpec(
        "VGG16 ImageNet (torchvision IMAGENET1K_V1)", "vgg16-397923af.pth", "397923af",
        env="BENCH_LPIPS_VGG", source="https://download.pytorch.org/models/vgg16-397923af.pth"),
    "squeeze": W.WeightSpec(
        "SqueezeNet 1.1 ImageNet (torchvision IMAGENET1K_V1)", "squeezenet1_1-b8a52dc0.pth", "b8a52dc0",
        env="BENCH_LPIPS_SQUEEZE", source="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth"),
}

_LIN_SHA256 = {
    "alex": "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    "vgg": "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    "squeeze": "4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76",
}
LIN_LAYERS: dict[str, W.WeightSpec] = {
    net: W.WeightSpec(f"LPIPS v{LPIPS_VERSION} {net} linear layers", f"{net}.pth", sha,
                      source="the lpips wheel (lpips/weights/v0.1/) or github.com/richzhang/PerceptualSimilarity")
    for net, sha in _LIN_SHA256.items()
}

_TORCHVISION_BUILDERS = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def wheel_lin_path(net: str, version: str = LPIPS_VERSION) -> Path | None:
    """The linear-layer file shipped inside the installed lpips package, if present (found
    without importing lpips: that imports torchvision's models, ~2 s)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        return None
    path = Path(folders[0]).resolve() / "weights" / f"v{version}" / f"{net}.pth"
    return path if path.is_file() else None


def to_lpips_input(images: Sequence[np.ndarray]) -> torch.Tensor:
    """N×3×H×W float32 in [-1, 1] from same-size H×W×3 uint8 images."""
    arr = np.stack([np.asarray(a) for a in images])
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise MetricError(f"LPIPS takes H×W×3 uint8 images, got {arr.dtype} {arr.shape[1:]}",
                          "round and clip to 0..255 first")
    return torch.from_numpy(arr).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0


def backbone_state_to_lpips(state: dict[str, Any], lpips_net: torch.nn.Module, what: str) -> dict[str, Any]:
    """Map a torchvision ``features.<i>.<param>`` state_dict onto lpips' ``slice<k>.<i>.<param>``
    (strict: every backbone tensor lpips uses must be there; ``classifier.*`` is ignored)."""
    target = lpips_net.state_dict()
    by_source = {}
    for name in target:
        m = re.fullmatch(r"slice\d+\.(\d+)\.(.+)", name)
        if m is None:
            raise WeightsError(f"unexpected lpips backbone parameter {name}", "update bench/metrics/lpips_metric.py")
        by_source[f"features.{m.group(1)}.{m.group(2)}"] = name
    W.check_keys(set(by_source), set(state), what, ignore_prefixes=("classifier.",))
    mapped = {}
    for src, dst in by_source.items():
        if tuple(state[src].shape) != tuple(target[dst].shape):
            raise WeightsError(f"{what}: {src} has shape {tuple(state[src].shape)}, expected {tuple(target[dst].shape)}",
                               "use the torchvision ImageNet weights of this network")
        mapped[dst] = state[src]
    return mapped


_BUILT: dict[tuple[str, str, str, str], torch.nn.Module] = {}  # (net, backbone sha, lin sha, device)


def build_lpips(net: str, backbone: Path | None, lins: Path | None, device: torch.device) -> torch.nn.Module:
    """lpips.LPIPS ``net`` v0.1 in eval mode without gradients on ``device``, its backbone and
    linear layers loaded strictly from the given files (None: seeded random, smoke tests)."""
    import lpips
    import torchvision

    # pnet_rand=True: torchvision builds the backbone without weights (no download);
    # pretrained=False: no lin file is read here — both are loaded below, strictly.
    with warnings.catch_warnings():  # torchvision's deprecation notice for pretrained=False
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(pretrained=False, net=net, version=LPIPS_VERSION, pnet_rand=True, verbose=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        state = (W.load_state_dict(backbone) if backbone is not None
                 else getattr(torchvision.models, _TORCHVISION_BUILDERS[net])(weights=None).state_dict())
    model.net.load_state_dict(backbone_state_to_lpips(state, model.net, BACKBONES[net].name), strict=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        layers = (W.load_state_dict(lins) if lins is not None
                  else {f"lin{k}.model.1.weight": torch.rand_like(lin.model[-1].weight) * 0.1
                        for k, lin in enumerate(model.lins)})
    W.check_keys({f"lin{k}.model.1.weight" for k in range(len(model.lins))}, set(layers), LIN_LAYERS[net].name)
    for k, lin in enumerate(model.lins):
        lin.model[-1].load_state_dict({"weight": layers[f"lin{k}.model.1.weight"]}, strict=True)
    model = model.eval().requires_grad_(False).to(device)
    if device.type == "cpu":  # 1.2× on CPU; values move by float rounding only
        model = model.to(memory_format=torch.channels_last)
    return model


class LPIPS(Metric):
    """LPIPS v0.1 distance, lower is better; per image and mean over the dataset.

    Params: ``net`` "alex" (default) | "vgg" | "squeeze"; ``backbone_path`` / ``lin_path``
    explicit weight files; ``batch_size`` for :meth:`distances`.
    """

    name = "lpips"
    version = "1"
    higher_is_better = False

    def __init__(self, *, net: str = "alex", backbone_path: str | None = None, lin_path: str | None = None,
                 batch_size: int = 8, **options: Any) -> None:
        super().__init__(**options)
        if net not in BACKBONES:
            raise ConfigError(f"lpips: unknown net {net!r}", f"use one of {', '.join(BACKBONES)}")
        self.net = net
        self.backbone_path = backbone_path
        self.lin_path = lin_path
        self.batch_size = max(1, int(batch_size))
        self._model: torch.nn.Module | None = None
        self._hashes: dict[str, str] = {}

    # -- weights ---------------------------------------------------------------------
    def _lin_candidate(self) -> str | Path | None:
        return self.lin_path or wheel_lin_path(self.net)

    def requirements(self) -> list[Requirement]:
        out = []
        for spec, path in ((BACKBONES[self.net], self.backbone_path), (LIN_LAYERS[self.net], self._lin_candidate())):
            found = W.find(spec, path, self.weights_dir)
            if found is not None:
                out.append(Requirement("weights", spec.name, True, str(found)))
            elif self.allow_random_weights:
                out.append(Requirement("weights", spec.name, True, "missing: random weights allowed (smoke test only)"))
            else:
                out.append(Requirement("weights", spec.name, False, W.missing_message(spec, path, self.weights_dir)
                                       + (f"; get it from {spec.source}" if spec.source else "")))
        return out

    def prepare(self) -> None:
        self.model()

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update({"net": self.net, "lpips_version": LPIPS_VERSION, "input": "uint8 -> [-1,1]"})
        out.update(self._hashes)
        return out

    def _weights_file(self, spec: W.WeightSpec, path: str | Path | None) -> tuple[Path | None, str]:
        """The checked file of ``spec`` and its sha256, or (None, "random(seed=…)") when it is
        missing and random weights are allowed (smoke tests)."""
        file = W.resolve_or_random(spec, path, self.weights_dir, allow_random=self.allow_random_weights)
        if file is None:  # missing and random weights allowed (a wrong hash or not allowed raised)
            log.warning("lpips: %s missing, using seeded random weights (smoke test only)", spec.name)
            self.random_weights = True
            return None, f"random(seed={RANDOM_SEED})"
        return file, W.sha256_file(file)

    def model(self) -> torch.nn.Module:
        """The lpips.LPIPS module with local weights, built on first use and shared by every
        instance of this process with the same net, weights (by sha256) and device."""
        if self._model is not None:
            return self._model
        backbone, bhash = self._weights_file(BACKBONES[self.net], self.backbone_path)
        lins, lhash = self._weights_file(LIN_LAYERS[self.net], self._lin_candidate())
        device = torch.device(resolve_device(self.device))
        key = (self.net, bhash, lhash, str(device))
        if key not in _BUILT:
            _BUILT[key] = build_lpips(self.net, backbone, lins, device)
        self._hashes = {"backbone_sha256": bhash, "lin_sha256": lhash}
        self._model = _BUILT[key]
        return self._model

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised backbone features (one tensor per LPIPS layer) of [-1, 1] images."""
        import lpips

        model = self.model()
        return [lpips.normalize_tensor(f) for f in model.net(model.scaling_layer(x))]

    def _distance(self, refs: torch.Tensor, recs: torch.Tensor, ref_of: torch.Tensor) -> torch.Tensor:
        """LPIPS of ``recs[i]`` against ``refs[ref_of[i]]``: lpips.LPIPS.forward's v0.1 path
        (scaling layer, backbone, unit-normalise, squared difference, linear layer, spatial
        mean, sum over layers), with each distinct original's features computed once."""
        from lpips.lpips import spatial_average

        model = self.model()
        total: torch.Tensor | float = 0.0
        for lin, f0, f1 in zip(model.lins, self._features(refs), self._features(recs)):
            total = total + spatial_average(lin((f0.index_select(0, ref_of) - f1) ** 2), keepdim=True)
        return total

    # -- values ----------------------------------------------------------------------
    def distances(self, refs: Sequence[np.ndarray], recs: Sequence[np.ndarray]) -> np.ndarray:
        """LPIPS of each (ref, rec) pair, float64; same-size images are batched together and
        an original shared by several pairs of a batch (one image, many codecs × rates) goes
        through the backbone once."""
        if len(refs) != len(recs):
            raise ValueError("refs and recs differ in length")
        model = self.model()
        device = next(model.parameters()).device
        out = np.full(len(refs), math.nan)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (a, b) in enumerate(zip(refs, recs)):
            if np.shape(a) != np.shape(b):
                raise MetricError(f"reconstruction {np.shape(b)} and original {np.shape(a)} differ in size",
                                  "the codec's decode must return the original H×W×3")
            groups.setdefault(tuple(np.shape(a)), []).append(i)
        for idx in groups.values():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                row_of: dict[int, int] = {}  # id() of an original array -> its row in x0
                originals: list[np.ndarray] = []
                for i in chunk:
                    if id(refs[i]) not in row_of:
                        row_of[id(refs[i])] = len(originals)
                        originals.append(refs[i])
                ref_of = torch.tensor([row_of[id(refs[i])] for i in chunk], device=device)
                x0 = to_lpips_input(originals).to(device)
                x1 = to_lpips_input([recs[i] for i in chunk]).to(device)
                try:
                    with torch.inference_mode():
                        d = self._distance(x0, x1, ref_of)
                except RuntimeError as err:
                    raise MetricError(f"LPIPS-{self.net} failed on {tuple(x0.shape[2:])} images: {err}",
                                      "images must be at least about 32 px on each side") from None
                out[chunk] = d.reshape(len(chunk)).double().cpu().numpy()
        return out

    def init(self) -> State:
        return {"n": np.zeros(()), "sum_lpips": np.zeros(())}

    def update(self, state: State, pair: Pair) -> dict[str, float]:
        return self.update_batch([state], [pair])[0]

    def update_batch(self, states: Sequence[State], pairs: Sequence[Pair]) -> list[dict[str, float]]:
        """One forward per batch of same-size pairs (see :meth:`distances`)."""
        values = self.distances([p.sample.image for p in pairs], [p.reconstruction for p in pairs])
        for state, value in zip(states, values):
            state["n"] += 1
            state["sum_lpips"] += float(value)
        return [{"lpips": float(v)} for v in values]

    def compute(self, state: State) -> dict[str, float]:
        n = float(state["n"])
        return {"lpips": float(state["sum_lpips"]) / n if n else math.nan}
