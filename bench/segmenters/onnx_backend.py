"""Any ONNX semantic segmentation model, run by onnxruntime on the CPU.

The model takes one float32 N×3×H×W input: RGB (or BGR) scaled by 1/``scale`` and
normalised with ``mean``/``std`` (in the scaled units; default ImageNet on [0, 1]). Its
first output is either logits N×C×h×w (→ bilinear to the network input size, argmax) or
integer labels N×h×w / N×1×h×w. Ids outside ``0..num_classes-1`` become 255 (void), and
the label map is resized (nearest) to the image's H×W.

``input_size`` (W×H) is the resize applied before the network; None uses the model's
fixed input size when it declares one, else each image at its own size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.modes import ChannelOrder
from bench.runtime import weights as W

from ..codecs.base import Requirement
from ..datasets.base import ClassSet
from ..errors import ConfigError, UnavailableError, WeightsError
from .base import Segmenter, parse_size, resize_nearest, resize_rgb, resolve_class_set, to_void
from .espnetv2 import IMAGENET_MEAN, IMAGENET_STD


class OnnxSegmenter(Segmenter):
    """ONNX segmenter. ``model``: the .onnx file; ``class_set``: a known class-set name
    (``cocostuff171``, ``coco_merged9``, ``cityscapes19``, …) or a class count;
    ``sha256``: expected hash (prefix) of the file, recorded either way;
    ``align_corners``: of the logits upsampling; ``channel_order``: "rgb" or "bgr";
    ``threads``: onnxruntime intra-op threads (None: its default)."""

    name = "onnx"
    version = "1"

    def __init__(self, *, model: str, class_set: str | int = "cocostuff171",
                 input_size: str | Sequence[int] | None = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 scale: float = 255.0, channel_order: ChannelOrder = "rgb", align_corners: bool = False,
                 sha256: str | None = None, batch_size: int = 1, threads: int | None = None,
                 weights_dir: str | None = None, allow_random_weights: bool = False,
                 device: str | None = None) -> None:
        super().__init__(weights_dir=weights_dir, allow_random_weights=allow_random_weights, device=device)
        if channel_order not in ("rgb", "bgr"):
            raise ConfigError(f"channel_order {channel_order!r}", "use 'rgb' or 'bgr'")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0 or scale <= 0:
            raise ConfigError(f"bad normalisation mean={mean} std={std} scale={scale}",
                              "give three means, three positive stds and a positive scale")
        self.model = str(model)
        self._class_set = resolve_class_set(class_set)
        self.input_size = parse_size(input_size)  # as configured (None: the model's, else native)
        self._net_size: tuple[int, int] | None = self.input_size  # what is used, known after loading
        self.mean, self.std, self.scale = tuple(map(float, mean)), tuple(map(float, std)), float(scale)
        self.channel_order = channel_order
        self.align_corners = bool(align_corners)
        self.spec = W.WeightSpec(name="ONNX segmenter", filename=Path(self.model).name, sha256=sha256)
        self.batch_size = max(1, int(batch_size))
        self.threads = threads
        self._session: Any = None

    @property
    def class_set(self) -> ClassSet:
        return self._class_set

    def _path(self) -> Path:
        return W.resolve(self.spec, self.model, self.weights_dir)

    def requirements(self) -> list[Requirement]:
        out = []
        try:
            import onnxruntime  # noqa: F401
            out.append(Requirement("package", "onnxruntime", True, onnxruntime.__version__))
        except ImportError:
            out.append(Requirement("package", "onnxruntime", False, "pip install onnxruntime"))
        try:
            out.append(Requirement("weights", self.spec.filename, True, str(self._path())))
        except WeightsError as err:
            out.append(Requirement("weights", self.spec.filename, False, str(err)))
        return out

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        try:
            sha = W.sha256_file(self._path())
        except WeightsError:
            sha = None
        size = (f"{self.input_size[0]}x{self.input_size[1]}" if self.input_size
                else "the model's fixed input size, else the image's own")
        out.update({"model": self.spec.filename, "weights_sha256": sha, "input_size": size,
                    "preprocess": f"PIL bilinear resize to {size}, {self.channel_order}, /{self.scale:g}, "
                                  f"mean {self.mean} std {self.std}",
                    "postprocess": f"logits bilinear (align_corners={self.align_corners}) to net input, argmax, "
                                   f"ids >= {self.class_set.num_classes} -> 255, nearest resize to image size"})
        return out

    @property
    def identity(self) -> str:
        try:
            sha = W.sha256_file(self._path())[:12]
        except WeightsError:
            sha = "missing"
        size = f"{self.input_size[0]}x{self.input_size[1]}" if self.input_size else "model"
        return f"onnx-{Path(self.model).stem}-{size}-{self.channel_order}@{sha}"

    # ------------------------------------------------------------------ running
    def session(self) -> Any:
        """The onnxruntime InferenceSession (created on first use, CPU provider)."""
        if self._session is None:
            try:
                import onnxruntime as ort
            except ImportError:
                raise UnavailableError("onnxruntime is not installed", "pip install onnxruntime") from None
            opts = ort.SessionOptions()
            if self.threads:
                opts.intra_op_num_threads = int(self.threads)
            self._session = ort.InferenceSession(str(self._path()), sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
            if self.input_size is None:
                shape = self._session.get_inputs()[0].shape
                if len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[2:]):
                    self._net_size = (int(shape[3]), int(shape[2]))
        return self._session

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        size = self._net_size or (image.shape[1], image.shape[0])
        x: np.ndarray = resize_rgb(image, size).astype(np.float32) / self.scale
        x = (x - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        if self.channel_order == "bgr":
            x = x[..., ::-1]
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def _labels(self, out: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        """N label maps at the network input size from the model's first output."""
        if out.ndim == 4 and out.shape[1] == 1 and np.issubdtype(out.dtype, np.integer):
            out = out[:, 0]
        if out.ndim == 3:  # already labels
            return out.astype(np.int64)
        if out.ndim != 4:
            raise ConfigError(f"ONNX model output has shape {out.shape}",
                              "the first output must be logits N×C×h×w or labels N×h×w")
        import torch
        from torch.nn import functional as F

        logits = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
        if tuple(logits.shape[2:]) != size_hw:
            logits = F.interpolate(logits, size=size_hw, mode="bilinear", align_corners=self.align_corners)
        return logits.argmax(1).numpy()

    def _predict_many(self, images: list[np.ndarray]) -> list[np.ndarray]:
        sess = self.session()
        name = sess.get_inputs()[0].name
        out: list[np.ndarray] = []
        step = self.batch_size if self._net_size else 1  # native sizes differ between images
        for i in range(0, len(images), step):
            chunk = images[i:i + step]
            x = np.stack([self._prepare(im) for im in chunk])
            labels = self._labels(sess.run(None, {name: x})[0], tuple(x.shape[2:]))
            for image, lab in zip(chunk, labels):
                out.append(resize_nearest(to_void(lab, self.class_set.num_classes), *image.shape[:2]))
        return out
