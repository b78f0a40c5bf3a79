"""mmsegmentation models (config + checkpoint) through mmseg's inference API.

An optional extra: mmsegmentation 1.2.2 needs mmcv 2.1.x built with its ops, which
has no wheel for current torch; ``scripts/build_mmcv.sh`` builds it once into a cache
and installs mmcv, mmengine, mmsegmentation, ftfy and regex.

The model is built by ``mmseg.apis.init_model(config, checkpoint=None)`` and the
checkpoint is loaded here, not by mmengine: ``torch.load(weights_only=True)`` (mmengine's
own loader calls ``torch.load`` without it, which torch ≥ 2.6 refuses for checkpoints
that pickle numpy arrays or mmengine objects in their ``meta``). The numpy types those
checkpoints hold are allow-listed; anything else needs ``trust_checkpoint=True``. Keys are
matched strictly. Inference is ``mmseg.apis.inference_model`` on the BGR image (mmseg's
convention for ndarray input), so the config's test pipeline (resize, normalisation,
sliding window, …) is the protocol, and mmseg returns labels at the input's H×W.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from bench.runtime import weights as W
from bench.runtime.devices import resolve_device

from ..codecs.base import Requirement
from ..datasets.base import ClassSet
from ..errors import UnavailableError, WeightsError
from .base import Segmenter, resolve_class_set, to_void

INSTALL = ("bash scripts/build_mmcv.sh  (builds mmcv==2.1.0 with ops once into ~/.cache/semcodec-bench/wheels, "
           "then pip installs it with mmengine, ftfy, regex and mmsegmentation==1.2.2)")


def mmseg_available() -> bool:
    """True when mmseg, mmcv and mmengine can be imported (without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("mmseg", "mmcv", "mmengine"))


MMSEG_PREFIX = "mmseg::"


def resolve_config(config: str) -> str:
    """A config path; ``mmseg::<dir>/<file>.py`` names a config shipped inside the installed
    mmsegmentation package (``mmseg/.mim/configs/...``), found without importing mmseg."""
    config = str(config)
    if not config.startswith(MMSEG_PREFIX):
        return config
    rel = config[len(MMSEG_PREFIX):]
    spec = importlib.util.find_spec("mmseg")
    if spec is None or not spec.origin:
        return rel  # reported as a missing config / package by requirements()
    return str(Path(spec.origin).parent / ".mim" / "configs" / rel)


def _import_apis() -> Any:
    if not mmseg_available():
        raise UnavailableError("mmsegmentation (with mmcv 2.1 and mmengine) is not installed", INSTALL)
    try:
        from mmseg import apis
    except Exception as err:  # ImportError, or mmcv's version assertion in mmseg/__init__
        raise UnavailableError(f"mmsegmentation cannot be imported: {err}", INSTALL) from None
    return apis


def _numpy_safe_globals() -> list[Any]:
    """numpy objects mmengine checkpoints pickle in ``meta`` (arrays, dtypes, scalars),
    under both module names (``numpy.core`` from numpy 1, ``numpy._core`` from numpy 2)."""
    from numpy._core import multiarray

    out: list[Any] = [np.ndarray, np.dtype]
    out += [type(np.dtype(t)) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1", "U1")]
    for fn in (multiarray._reconstruct, multiarray.scalar):
        out += [(fn, f"numpy.core.multiarray.{fn.__name__}"), (fn, f"numpy._core.multiarray.{fn.__name__}")]
    return out


def load_checkpoint_safely(path: Path | str, *, trust: bool = False) -> dict[str, Any]:
    """The checkpoint dict of an mmengine ``.pth`` (weights_only, numpy allow-listed).

    ``trust=True`` falls back to full unpickling — only for files you trust.
    """
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        if not trust:
            try:
                unsafe = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)) or "-"
            except Exception:
                unsafe = "?"
            raise WeightsError(
                f"cannot load {path} with weights_only=True ({type(err).__name__}); "
                f"objects outside the allow-list: {unsafe}",
                "re-save only {'state_dict': ..., 'meta': {'dataset_meta': ...}}, "
                "or pass trust_checkpoint=True for a file you trust",
            ) from None
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict", "save model.state_dict()")
    return obj


class MMSegSegmenter(Segmenter):
    """mmsegmentation segmenter. ``config``: the model's config file (.py);
    ``checkpoint``: its .pth (None → random init, only with ``allow_random_weights``);
    ``class_set``: class-set name or class count of the model's outputs (ids ≥ count → 255);
    ``sha256``: expected hash (prefix) of the checkpoint; ``url``: where the checkpoint is
    published (shown when it is missing); ``trust_checkpoint``: allow full unpickling of the
    checkpoint (never for untrusted files). ``config`` may be ``mmseg::<dir>/<file>.py``, a
    config shipped with the installed mmsegmentation (see :func:`resolve_config`)."""

    name = "mmseg"
    version = "1"

    def __init__(self, *, config: str, checkpoint: str | None = None, class_set: str | int = "cityscapes19",
                 sha256: str | None = None, url: str | None = None, trust_checkpoint: bool = False,
                 batch_size: int = 1,
                 weights_dir: str | None = None, allow_random_weights: bool = False,
                 device: str | None = None) -> None:
        super().__init__(weights_dir=weights_dir, allow_random_weights=allow_random_weights, device=device)
        self.config = resolve_config(config)
        self.checkpoint = checkpoint
        self._class_set = resolve_class_set(class_set)
        self.spec = W.WeightSpec(name="mmseg checkpoint", filename=Path(checkpoint).name if checkpoint else "",
                                 sha256=sha256, source=url or "")
        self.trust_checkpoint = bool(trust_checkpoint)
        self.batch_size = max(1, int(batch_size))
        self._model: Any = None
        self._random = False

    @property
    def class_set(self) -> ClassSet:
        return self._class_set

    def _weights_path(self) -> Path | None:
        """The checkpoint file; None in random-init mode; raises when missing."""
        if self.checkpoint is None:
            if self.allow_random_weights:
                return None
            raise WeightsError("mmseg segmenter has no checkpoint", "pass checkpoint=PATH to the model's .pth")
        return W.resolve_or_random(self.spec, self.checkpoint, self.weights_dir, allow_random=self.allow_random_weights)

    @property
    def random_weights(self) -> bool:
        if self._model is not None:
            return self._random
        try:
            return self._weights_path() is None
        except WeightsError:
            return False

    def requirements(self) -> list[Requirement]:
        out = [Requirement("package", "mmsegmentation", mmseg_available(),
                           "installed" if mmseg_available() else INSTALL)]
        if not Path(self.config).is_file():
            out.append(Requirement("weights", Path(self.config).name, False, f"config {self.config} not found"))
        try:
            path = self._weights_path()
            out.append(Requirement("weights", self.spec.filename or "checkpoint", True,
                                   str(path) if path else "random init (allow_random_weights)"))
        except WeightsError as err:
            out.append(Requirement("weights", self.spec.filename or "checkpoint", False, str(err)))
        return out

    def _sha(self) -> str | None:
        try:
            path = self._weights_path()
        except WeightsError:
            return None
        return W.sha256_file(path) if path else None

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        cfg = Path(self.config)
        out.update({"config": cfg.name, "config_sha256": W.sha256_file(cfg) if cfg.is_file() else None,
                    "checkpoint": self.spec.filename or None, "weights_sha256": self._sha(),
                    "preprocess": "the config's test_pipeline on the BGR image (mmseg.apis.inference_model)",
                    "postprocess": f"mmseg pred_sem_seg at image size, ids >= {self.class_set.num_classes} -> 255"})
        return out

    @property
    def identity(self) -> str:
        sha = self._sha()
        cfg = Path(self.config)
        cfg_sha = W.sha256_file(cfg)[:8] if cfg.is_file() else "nocfg"
        return f"mmseg-{cfg.stem}-{cfg_sha}@{sha[:12] if sha else 'random-seed0'}"

    # ------------------------------------------------------------------ running
    def model(self) -> Any:
        """The mmseg segmentor (built and loaded on first use)."""
        if self._model is None:
            apis = _import_apis()
            if not Path(self.config).is_file():
                raise UnavailableError(f"mmseg config {self.config} not found", "pass config=PATH to the model's .py")
            path = self._weights_path()
            device = resolve_device(self.device)
            import torch

            with torch.random.fork_rng(devices=[]):  # random init (no checkpoint) is seeded: reproducible
                torch.manual_seed(0)
                model = apis.init_model(self.config, checkpoint=None, device="cpu")
            if path is not None:
                ckpt = load_checkpoint_safely(path, trust=self.trust_checkpoint)
                state = ckpt.get("state_dict", ckpt)
                if state and all(k.startswith("module.") for k in state):
                    state = {k[len("module."):]: v for k, v in state.items()}
                W.check_keys(set(model.state_dict()), set(state), f"mmseg model {Path(self.config).name} from {path}")
                model.load_state_dict(state, strict=True)
                meta = ckpt.get("meta") or {}
                if isinstance(meta, dict) and isinstance(meta.get("dataset_meta"), dict):
                    model.dataset_meta = meta["dataset_meta"]
            self._random = path is None
            self._model = model.to(device).eval()
        return self._model

    def _predict_many(self, images: list[np.ndarray]) -> list[np.ndarray]:
        apis = _import_apis()
        model = self.model()
        out: list[np.ndarray] = []
        for i in range(0, len(images), self.batch_size):
            chunk = images[i:i + self.batch_size]
            bgr = [np.ascontiguousarray(im[..., ::-1]) for im in chunk]
            results = apis.inference_model(model, bgr)
            for image, res in zip(chunk, results):
                labels = res.pred_sem_seg.data[0].to("cpu").numpy()
                if labels.shape != image.shape[:2]:
                    raise WeightsError(f"mmseg returned {labels.shape} labels for a {image.shape[:2]} image",
                                       "the config's test pipeline must keep the original shape (ori_shape)")
                out.append(to_void(labels, self.class_set.num_classes))
        return out
