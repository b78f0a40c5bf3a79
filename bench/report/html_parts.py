"""Building blocks of the HTML report: its options, escaping, images as data URIs, a run group."""


from __future__ import annotations

import base64
import html
import io
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from bench.errors import BenchError, ConfigError
from bench.modes import RateBasis
from bench.storage.atomic import write_with

log = logging.getLogger("bench")


@dataclass
class HtmlOptions:
    """``bpp``: rate at which IoU bars and crops are shown (default: median of the rate
    points' bpp); ``image_id``: image for the crops (default: the first with ok rows for
    every codec); ``crop``: side of the square centre crop in pixels; ``crops``: False
    skips recomputing reconstructions; ``codec_params``: card overrides per codec (as
    ``--param``) used to rebuild codecs."""

    bpp: float | None = None
    image_id: str | None = None
    crop: int = 192
    crops: bool = True
    codec_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    ci: Any = None  # a bench.analysis.stats.Bootstrap: intervals in the table and bands on the curves
    worst: int = 3  # images listed per codec × rate × criterion in "Worst images" (0: no section)
    rate: RateBasis = "real"  # x axis of the table and curves: real bpp, or "paper" (bench.report.rates.rate_view)

    def __post_init__(self) -> None:
        if isinstance(self.crop, bool) or not isinstance(self.crop, int) or self.crop < 1:
            raise ConfigError(f"crop side {self.crop!r}: must be a whole number of pixels, 1 or more",
                              "e.g. --crop 192 (the default)")
        if isinstance(self.worst, bool) or not isinstance(self.worst, int) or self.worst < 0:
            raise ConfigError(f"worst {self.worst!r}: must be a whole number of images, 0 or more", "e.g. worst=3")
        if self.bpp is not None and not (math.isfinite(self.bpp) and self.bpp >= 0):
            raise ConfigError(f"bpp {self.bpp!r}: must be a finite rate, 0 or more", "e.g. --bpp 0.2")


Part = str | Callable[[], str]  # HTML, or a function giving it once what it waits for is done


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def assemble(parts: Sequence[Part], sep: str = "") -> str:
    """The HTML of ``parts`` joined by ``sep``, each deferred one called (waiting for what it
    waits for)."""
    return sep.join(p() if callable(p) else p for p in parts)


def failed_figure(who: str, err: BaseException) -> str:
    """The caption standing for a crop that could not be recomputed: ``who``, then why (a
    BenchError's problem, else the exception's type and text)."""
    why = err.problem if isinstance(err, BenchError) else f"{type(err).__name__}: {err}"
    return f'<figure><figcaption class="note">{_esc(who)}: not recomputed ({_esc(why)})</figcaption></figure>'


def keep_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (atomically, its folder made) for a later page; a folder that
    cannot be written only loses the copy (the page is still written)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_with(path, lambda tmp: tmp.write_bytes(data))
    except (OSError, BenchError) as err:
        log.debug("not kept for a later page: %s (%s)", path, err)


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def palette_png(data: bytes) -> bytes:
    """A PNG (a curve) re-saved with a 256-colour palette (Pillow's fast octree) on white: a
    curve's few colours and their anti-aliasing fit; about a third of the RGBA file's bytes."""
    with Image.open(io.BytesIO(data)) as im:
        rgba = im.convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    small = flat.quantize(256, method=Image.Quantize.FASTOCTREE)
    palette = np.asarray(small.getpalette() or [], np.uint8).reshape(-1, 3)
    palette[(palette >= 250).all(axis=1)] = 255  # the octree's bucket of the page: pure white again
    small.putpalette(palette.ravel().tolist())
    buf = io.BytesIO()
    small.save(buf, format="PNG")
    return buf.getvalue()


def array_uri(image: np.ndarray, quality: int = 90) -> str:
    """A lossy WebP thumbnail (``quality`` 0–100) of an H×W(×3) uint8 image as a data URI."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="WEBP", quality=quality, method=4)
    return "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str, alt: str, cls: str = "") -> str:
    klass = f' class="{_esc(cls)}"' if cls else ""
    return f'<img src="{uri}" alt="{_esc(alt)}"{klass}>'


@dataclass
class _Group:
    """Runs of one dataset content, their combined summary and codec labels."""

    runs: list[dict[str, Any]]
    summary: pd.DataFrame
    origin: dict[str, tuple[str, str]]  # label -> (run_id, codec)
