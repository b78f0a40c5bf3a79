"""Small deterministic components for runner/store tests (importable as ``fakes_bench``)."""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.codecs.base import Codec, Encoded, RateKnob
from bench.datasets.base import Dataset, Sample, read_rgb
from bench.errors import CodecError
from bench.metrics.base import Metric, Pair, State

CALLS: dict[str, int] = {"encode": 0}


class QuantCodec(Codec):
    """Uniform quantisation with step ``rate`` + zlib: real bytes, PSNR falls as the step grows.

    Optional env ``FAKE_CODEC_SLEEP`` (seconds per encode) slows it down for kill tests;
    ``FAKE_CODEC_LOG`` appends one line per encode to that file.
    """

    name = "quant"
    version = "1"
    parallel_safe = True
    rate_knob = RateKnob("step", (32, 16, 4), higher_is_better=False, minimum=1, maximum=128)

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Any = None) -> Encoded:
        CALLS["encode"] += 1
        if os.environ.get("FAKE_CODEC_LOG"):
            with open(os.environ["FAKE_CODEC_LOG"], "a") as fh:
                fh.write(f"{rate}\n")
        time.sleep(float(os.environ.get("FAKE_CODEC_SLEEP", "0")))
        step = int(rate)
        q = (image // step).astype(np.uint8)
        header = np.array([image.shape[0], image.shape[1], step], dtype=">u4").tobytes()
        return Encoded({"image": header + zlib.compress(q.tobytes(), 9), "side": b"\x01\x02"}, {"note": "quantised"})

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        data = parts["image"]
        h, w, step = np.frombuffer(data[:12], dtype=">u4")
        q = np.frombuffer(zlib.decompress(data[12:]), dtype=np.uint8).reshape(int(h), int(w), 3)
        return np.clip(q.astype(np.int32) * int(step) + int(step) // 2, 0, 255).astype(np.uint8)


class SemanticQuantCodec(QuantCodec):
    """Needs a label map: sends it raw next to the quantised image; notes its source."""

    name = "semquant"
    needs_semantics = True
    parallel_safe = False

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Any = None) -> Encoded:
        enc = super().encode(image, rate)
        enc.parts["labels"] = zlib.compress(semantics.labels.tobytes(), 9)
        enc.notes = {"semantics_source": semantics.source, "label_set": semantics.class_set,
                     "n_label_values": len(np.unique(semantics.labels))}
        return enc


class CrashCodec(QuantCodec):
    """Fails on images whose id contains 'crash'."""

    name = "crashy"

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Any = None) -> Encoded:
        if image.mean() > 250:  # the white image crashes it
            raise CodecError("simulated encoder crash", "none: this is a test")
        return super().encode(image, rate)


class PngFolder(Dataset):
    """All PNGs of ``root`` (no resizing)."""

    name = "pngs"

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.png"))

    def files(self, image_id: str) -> list[Path]:
        return [self.root / f"{image_id}.png"]

    def load(self, image_id: str) -> Sample:
        return Sample(image_id, read_rgb(self.root / f"{image_id}.png"))


class NanMetric(Metric):
    """Returns NaN for every image (to test NaN recording)."""

    name = "nanmetric"

    def init(self) -> State:
        return {"n": np.zeros(())}

    def update(self, state: State, pair: Pair) -> dict[str, float]:
        state["n"] += 1
        return {"nanmetric": float("nan")}

    def compute(self, state: State) -> dict[str, float]:
        return {"nanmetric": float("nan")}


class CountingMetric(Metric):
    """Mean absolute error; counts calls and records batch sizes (class attributes)."""

    name = "countmae"
    pairs_seen = 0
    batches: list[int] = []

    def init(self) -> State:
        return {"n": np.zeros(()), "sum": np.zeros(())}

    def update(self, state: State, pair: Pair) -> dict[str, float]:
        return self.update_batch([state], [pair])[0]

    def update_batch(self, states, pairs):
        type(self).pairs_seen += len(pairs)
        type(self).batches.append(len(pairs))
        out = []
        for state, pair in zip(states, pairs):
            mae = float(np.mean(np.abs(pair.sample.image.astype(float) - pair.reconstruction.astype(float))))
            state["n"] += 1
            state["sum"] += mae
            out.append({"countmae": mae})
        return out

    def compute(self, state: State) -> dict[str, float]:
        return {"countmae": float(state["sum"] / state["n"])}


class GpuProbeMetric(Metric):
    """A stand-in network metric (no ``pixel``): 1 where the process was given a GPU
    (``CUDA_VISIBLE_DEVICES`` names one, as Ray sets it for a task), else 0."""

    name = "gpuprobe"

    def init(self) -> State:
        return {"n": np.zeros(())}

    def update(self, state: State, pair: Pair) -> dict[str, float]:
        import os

        state["n"] += 1
        return {"gpuprobe": float(bool(os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()))}

    def compute(self, state: State) -> dict[str, float]:
        return {}


def encode_log_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def write_pngs(root: Path, n: int, size: tuple[int, int] = (168, 176), seed: int = 0) -> list[Path]:
    """``n`` smooth random RGB images (compressible, like photos) as PNG files."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, size=(size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size[1], size[0]), Image.BICUBIC)
        p = root / f"img{i:03d}.png"
        img.save(p)
        paths.append(p)
    return paths


def write_cards(card_root: Path, data_root: Path) -> Path:
    """Cards registering the fakes under ``card_root`` (use with BENCH_CARD_PATH)."""
    (card_root / "codecs").mkdir(parents=True, exist_ok=True)
    (card_root / "datasets").mkdir(parents=True, exist_ok=True)
    (card_root / "codecs" / "quant.yaml").write_text("name: quant\nentry: fakes_bench:QuantCodec\n")
    (card_root / "codecs" / "crashy.yaml").write_text("name: crashy\nentry: fakes_bench:CrashCodec\nrates: [8]\n")
    (card_root / "datasets" / "pngs.yaml").write_text(
        f"name: pngs\nentry: fakes_bench:PngFolder\nparams:\n  root: {data_root}\n")
    return card_root


def use_fakes(tmp_path: Path, monkeypatch: Any, n_images: int, extra: Mapping[str, str] | None = None) -> Path:
    """``n_images`` PNGs in ``tmp_path/data`` and the fakes' cards (plus ``extra``: card path
    under the card root -> YAML text) on BENCH_CARD_PATH, registries reset; returns the data folder."""
    from bench.registry import catalog

    data = tmp_path / "data"
    write_pngs(data, n_images)
    cards = write_cards(tmp_path / "cards", data)
    for name, text in (extra or {}).items():
        (cards / name).write_text(text)
    monkeypatch.setenv("BENCH_CARD_PATH", str(cards))
    catalog.reset()
    return data


def only_cards(monkeypatch: Any, names: set[str]) -> None:
    """Make the codec registry hold only the project's cards called ``names`` (so codecs
    added later do not change what ``--codecs all`` means in a test)."""
    from bench.registry import cards, catalog
    from bench.registry.core import Registry

    reg, original = Registry("codec"), catalog.registry
    for path in sorted((cards.PROJECT_ROOT / "codecs").glob("*.yaml")):
        entry = cards.read_card(path, "codec")
        if entry.name in names:
            reg.add(entry)
    assert set(reg.names()) == names
    monkeypatch.setattr(catalog, "registry", lambda kind: reg if kind == "codec" else original(kind))


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone); reads /proc (Linux)."""
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def count_calls(monkeypatch: Any, owner: Any, name: str) -> dict[str, int]:
    """Replace ``owner.name`` by a wrapper counting its calls (in this process) in ``["n"]``."""
    count = {"n": 0}
    real = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        count["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return count
