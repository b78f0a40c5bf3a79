"""torch-fidelity's Inception (``inception-v3-compat``, pool3, 2048-d): its weights (published or
seeded random ones for smoke tests), the extractor, features and the HiFiC patch grid.

Images go in as N×3×H×W uint8 tensors (the extractor resizes to 299×299 itself, TF1 bilinear);
features come out as n×2048 float64.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.runtime import weights as W

from ..errors import MetricError

if TYPE_CHECKING:  # torch is imported where a network runs
    import torch

EXTRACTOR = "inception-v3-compat"
FEATURE = "2048"
DIM = 2048
RANDOM_SEED = 0

# The file torch-fidelity downloads (URL_INCEPTION_V3 in torch_fidelity/feature_extractor_inceptionv3.py);
# pytorch-fid publishes the same converted TF 2015-12-05 weights as pt_inception-2015-12-05-6726825d.pth.
INCEPTION_WEIGHTS = W.WeightSpec(
    name="FID Inception v3 (TF inception-2015-12-05, torch-fidelity)",
    filename="weights-inception-2015-12-05-6726825d.pth",
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    env="BENCH_FID_INCEPTION",
    source="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
           "weights-inception-2015-12-05-6726825d.pth (pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
           "is accepted too)",
)
INCEPTION_ALIASES = ("pt_inception-2015-12-05-6726825d.pth",)


# -- the network ------------------------------------------------------------------------
def random_inception_state_dict(seed: int = RANDOM_SEED) -> dict[str, torch.Tensor]:
    """A seeded random state_dict of torch-fidelity's Inception (same keys and shapes).

    Convolutions: Kaiming-normal (fan-in, ReLU) so activations keep their scale through
    the depth; batch norms: identity statistics; fc: N(0, 0.01). Smoke tests only.
    """
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:  # keep the fresh modules
            return None

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        skeleton = _Skeleton(EXTRACTOR, [FEATURE], feature_extractor_weights_path=str(empty))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in skeleton.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=gen)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.reset_parameters()
            elif isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=0.01, generator=gen)
                torch.nn.init.zeros_(module.bias)
    return {k: v.detach().clone() for k, v in skeleton.state_dict().items()}


def save_random_inception(path: Path | str, seed: int = RANDOM_SEED) -> Path:
    """Write :func:`random_inception_state_dict` to ``path`` (a torch-fidelity weights file)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_inception_state_dict(seed), path)
    return path


_RANDOM_DIR: list[Path] = []


def _random_weights_file(seed: int) -> Path:
    if not _RANDOM_DIR:
        _RANDOM_DIR.append(Path(tempfile.mkdtemp(prefix="bench-random-inception-")))
        atexit.register(shutil.rmtree, _RANDOM_DIR[0], True)
    path = _RANDOM_DIR[0] / f"random-inception-seed{seed}.pth"
    if not path.is_file():
        save_random_inception(path, seed)
    return path


def find_inception(path: str | Path | None, weights_dir: str | Path | None) -> Path | None:
    """The first existing candidate file (torch-fidelity's or pytorch-fid's name), unverified."""
    found = W.find(INCEPTION_WEIGHTS, path, weights_dir)
    for alias in INCEPTION_ALIASES:
        if found is None:
            spec = W.WeightSpec(INCEPTION_WEIGHTS.name, alias, INCEPTION_WEIGHTS.sha256)
            found = W.find(spec, None, weights_dir)
    return found


def resolve_inception(path: str | Path | None, weights_dir: str | Path | None, *, fetch: bool = True) -> Path:
    """The verified FID Inception file (downloaded when missing, unless ``fetch`` is False or
    offline); :class:`WeightsError` names the file, hash and source."""
    found = find_inception(path, weights_dir)
    if found is None:
        return W.resolve(INCEPTION_WEIGHTS, path, weights_dir, fetch=fetch)  # fetches, or raises with the fix
    return W.resolve(INCEPTION_WEIGHTS, found)


def load_extractor(weights_file: Path | str, device: str) -> torch.nn.Module:
    """torch-fidelity's own Inception, built by its own factory from a local file, on ``device``."""
    from torch_fidelity.utils import create_feature_extractor

    extractor = create_feature_extractor(EXTRACTOR, [FEATURE], cuda=False,
                                         feature_extractor_weights_path=str(weights_file), verbose=False)
    return extractor.to(device)


def inception_features(extractor: torch.nn.Module, images: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """Pool3 features (n×2048 float64) of same-size H×W×3 uint8 images, fed as N×3×H×W uint8."""
    import torch

    device = next(extractor.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        chunk = np.stack(images[start:start + batch_size])
        x = torch.from_numpy(chunk).permute(0, 3, 1, 2).contiguous().to(device)
        with torch.no_grad():
            feats = extractor(x)[0]
        out.append(feats.double().cpu().numpy())
    return np.concatenate(out).reshape(-1, DIM)


def patch_origins(height: int, width: int, patch: int) -> list[tuple[int, int]]:
    """Top-left corners of the HiFiC patch grid: p-aligned patches, then the grid shifted by p/2."""
    rows, cols = height // patch, width // patch
    if rows == 0 or cols == 0:
        raise MetricError(f"image {height}x{width} is smaller than the {patch}-px FID patch",
                          "use a smaller 'patch' or whole-image FID (patch: null)")
    half = patch // 2
    return ([(i * patch, j * patch) for i in range(rows) for j in range(cols)]
            + [(half + i * patch, half + j * patch) for i in range(rows - 1) for j in range(cols - 1)])
