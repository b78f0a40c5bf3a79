"""The paper figure presets (panels, the paper's protocol and rate basis) and the run data
they are drawn from; a preset drawn from runs of another protocol says so and warns
(:class:`ProtocolWarning`). Drawing: :mod:`bench.report.figures`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.errors import ConfigError
from bench.modes import RateBasis

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Panel:
    """One axes: the first of ``keys`` found in the runs, drawn against bpp."""

    keys: tuple[str, ...]
    title: str
    ssm_line: bool = False


@dataclass(frozen=True)
class Preset:
    """A figure layout: panels in one row, one row per dataset when ``rows_by_dataset``."""

    name: str
    source: str
    panels: tuple[Panel, ...]
    rows_by_dataset: bool = False
    panel_height: float = 1.45  # inches per panel row
    protocol: str | None = None  # the paper's dataset protocol preset (bench.datasets.presets)
    rate: RateBasis = "real"  # default x axis: "real" bpp or each codec's "paper" formula rate


PRESETS: dict[str, Preset] = {
    "sqgan-fig12": Preset(
        "sqgan-fig12", "SQ-GAN (Pezone, Barbarossa, Caire), Fig. 12 layout: FID, LPIPS, PSNR, mIoU vs bpp",
        (Panel(("fid",), "FID"), Panel(("lpips",), "LPIPS"), Panel(("psnr",), "PSNR"),
         Panel(("miou_gt", "miou_orig"), "mIoU")), protocol="sqgan", rate="paper"),
    "spic-fig4": Preset(
        "spic-fig4", "SPIC, Fig. 4 layout: (a) mIoU and (b) FID vs bpp; dotted line: lossless SSM bpp",
        (Panel(("miou_gt", "miou_orig"), "(a) mIoU", ssm_line=True), Panel(("fid",), "(b) FID")),
        panel_height=1.6, protocol="spic"),
    "iwai-fig8": Preset(
        "iwai-fig8", "Iwai et al., Fig. 8 layout: LPIPS, FID, PSNR, MS-SSIM vs bpp, one row group per dataset",
        (Panel(("lpips",), "LPIPS"), Panel(("fid",), "FID"), Panel(("psnr",), "PSNR"),
         Panel(("msssim", "msssim_db"), "MS-SSIM")),
        rows_by_dataset=True, protocol="iwai"),
}


class ProtocolWarning(UserWarning):
    """A figure preset is drawn from runs made under another protocol than its paper's."""


def run_protocol(run: dict[str, Any]) -> str:
    """The protocol preset a run was made under ("card" for runs without --protocol)."""
    return str((run["meta"].get("protocol") or {}).get("name") or "card")


def _protocol_summary(run: dict[str, Any]) -> str:
    """': 256x512, image bilinear, labels nearest-torch, mIoU average all' from a run's preset."""
    rec = run["meta"].get("protocol") or {}
    ds = rec.get("dataset") or {}
    if not ds:
        return ""
    size = f"{ds['height']}x{ds['width']}" if ds.get("height") else "native size"
    average = rec.get("miou_average_used", rec.get("miou_average"))
    bits = [size, f"image {ds.get('image_resample', '?')}", f"labels {ds.get('label_resample', '?')}",
            f"classes {ds.get('classes', '?')}", f"mIoU average {average}"]
    return ": " + ", ".join(bits)


def protocol_caption(p: Preset, runs: Sequence[RunData]) -> str:
    """Caption line naming the runs' protocol and the paper's; warns when they differ."""
    used = list(dict.fromkeys(run_protocol(r.run) for r in runs))
    if p.protocol is None:
        return f"protocol: {', '.join(used)}"
    others = [u for u in used if u != p.protocol]
    if not others:
        return f"protocol: {p.protocol} (the paper's){_protocol_summary(runs[0].run)}"
    msg = (f"{p.name}: runs made under protocol {', '.join(repr(u) for u in others)}, not the paper's "
           f"{p.protocol!r} (re-run with `bench run --protocol {p.protocol}` for the paper's numbers)")
    warnings.warn(msg, ProtocolWarning, stacklevel=3)
    return f"protocol: {', '.join(used)} — NOT the paper's ({p.protocol})"


@dataclass
class RunData:
    """A run's metadata and its summary (one row per codec × rate)."""

    run: dict[str, Any]
    summary: pd.DataFrame
    labels: dict[str, str] = field(default_factory=dict)  # codec name -> legend label

    @property
    def dataset(self) -> str:
        return str((self.run["meta"].get("dataset") or {}).get("name") or self.run["config"].get("dataset"))

    @property
    def content(self) -> str:
        return str((self.run["meta"].get("dataset") or {}).get("content_hash"))


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"figure preset {name!r} is unknown", f"use one of {', '.join(PRESETS)}")
    return PRESETS[name]


def describe_presets() -> str:
    """One line per preset: name, source figure and panels."""
    return "\n".join(f"{p.name:12s} {p.source} [protocol: {p.protocol}; rate: {p.rate}]" for p in PRESETS.values())
