"""BPG (Fabrice Bellard's HEVC-intra image format) through the ``bpgenc`` / ``bpgdec`` tools.

The adapter writes the image as PNG into a private temporary directory (inside this
process's ``$TMPDIR/bench-bpg-pid<PID>``, see :mod:`bench.runtime.scratch`: folders of
killed runs are removed when the next run starts coding BPG), runs
``bpgenc -q Q -f 444 -c ycbcr -b 8 -o out.bpg in.png``, sends the .bpg file as the
single ``"image"`` part, and decodes with ``bpgdec -o out.png in.bpg``. Subprocesses
get argument lists (no shell) and a timeout; any failure becomes a
:class:`~bench.errors.CodecError` carrying the tool's stderr.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.runtime.procs import run_tool
from bench.runtime.scratch import scratch_dir

from ..errors import CodecError, ConfigError, UnavailableError
from .base import Codec, Encoded, RateKnob, Requirement, Semantics, check_rgb_uint8, find_binary
from .pillow_codecs import IMAGE_PART, image_part, rgb_array

HOW_TO_GET = ("BPG 0.9.8 from https://bellard.org/bpg/ (libbpg-0.9.8.tar.gz), build with `make`, "
              "put bpgenc/bpgdec on PATH or set params.bpgenc / params.bpgdec in codecs/bpg.yaml")
CHROMA_FORMATS = ("444", "420", "422")
COLOR_SPACES = ("ycbcr", "rgb", "ycgco", "ycbcr_bt709", "ycbcr_bt2020")
BIT_DEPTH = 8
_VERSION_RE = re.compile(r"version\s+(\S+)", re.IGNORECASE)
_ENCODER_RE = re.compile(r"HEVC encoder \([^)]*default\s*=\s*(\w+)\)")


class BpgCodec(Codec):
    """BPG at 8 bits. Knob: HEVC quantiser ``q`` 0–51 (LOWER = more bits, higher quality).

    Params: ``chroma`` "444" (default) | "420" | "422"; ``color_space`` "ycbcr" (default)
    | "rgb" | "ycgco" | "ycbcr_bt709" | "ycbcr_bt2020"; ``bpgenc`` / ``bpgdec``: paths of the
    tools (default: found on PATH); ``timeout_s``: seconds allowed per tool call.
    """

    parallel_safe = True  # pure CPU work / subprocesses: may run in worker processes

    name = "bpg"
    version = "bpg-missing"
    rate_knob = RateKnob("q", (45, 40, 35, 30, 25), higher_is_better=False, minimum=0, maximum=51)

    def __init__(self, chroma: str | int = "444", color_space: str = "ycbcr", bpgenc: str | None = None,
                 bpgdec: str | None = None, timeout_s: float = 120.0) -> None:
        chroma = str(chroma)
        if chroma not in CHROMA_FORMATS:
            raise ConfigError(f"bpg: chroma {chroma!r} is not one of {CHROMA_FORMATS}",
                              "set params.chroma to \"444\" or \"420\" in codecs/bpg.yaml")
        if color_space not in COLOR_SPACES:
            raise ConfigError(f"bpg: color_space {color_space!r} is not one of {COLOR_SPACES}",
                              "set params.color_space in codecs/bpg.yaml")
        if float(timeout_s) <= 0:
            raise ConfigError(f"bpg: timeout_s must be positive, got {timeout_s}", "set params.timeout_s > 0")
        self.chroma, self.color_space, self.timeout_s = chroma, color_space, float(timeout_s)
        self.configured = {"bpgenc": bpgenc, "bpgdec": bpgdec}
        self.tools = {tool: find_binary(tool, path) for tool, path in self.configured.items()}
        if self.tools["bpgenc"]:
            self.version = f"bpg-{self._tool_version(self.tools['bpgenc'])}"

    # -- what it needs -------------------------------------------------------------
    def requirements(self) -> list[Requirement]:
        reqs = []
        for tool, path in self.tools.items():
            if path:
                reqs.append(Requirement("binary", tool, True, path))
            else:
                where = f"configured {self.configured[tool]!r} is not an executable; " if self.configured[tool] else ""
                reqs.append(Requirement("binary", tool, False, where + HOW_TO_GET))
        return reqs

    def params(self) -> dict[str, Any]:
        return {"chroma": self.chroma, "color_space": self.color_space, "bit_depth": BIT_DEPTH}

    # -- the work -----------------------------------------------------------------
    def encode(self, image: np.ndarray, rate: Any, *, semantics: Semantics | None = None) -> Encoded:
        check_rgb_uint8(image)
        self.rate_knob.check(rate)
        q = int(rate)
        if q != rate:
            raise ConfigError(f"bpg: quantiser q={rate} is not an integer", "use integer q in 0..51")
        with tempfile.TemporaryDirectory(prefix="job-", dir=scratch_dir("bpg")) as tmp:
            src, out = Path(tmp) / "in.png", Path(tmp) / "out.bpg"
            Image.fromarray(np.ascontiguousarray(image)).save(src, "PNG", compress_level=1)
            self._run([self._tool("bpgenc"), "-q", str(q), "-f", self.chroma, "-c", self.color_space,
                       "-b", str(BIT_DEPTH), "-o", str(out), str(src)], out)
            return Encoded({IMAGE_PART: out.read_bytes()})

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        data = image_part(parts, self.name)
        with tempfile.TemporaryDirectory(prefix="job-", dir=scratch_dir("bpg")) as tmp:
            src, out = Path(tmp) / "in.bpg", Path(tmp) / "out.png"
            src.write_bytes(data)
            self._run([self._tool("bpgdec"), "-o", str(out), str(src)], out)
            try:
                with Image.open(out) as im:
                    im.load()
                    return rgb_array(im, self.name)
            except OSError as err:
                raise CodecError(f"bpg: bpgdec wrote an unreadable PNG: {err}", HOW_TO_GET) from None

    # -- helpers ------------------------------------------------------------------
    def _tool(self, tool: str) -> str:
        path = self.tools[tool]
        if not path:
            raise UnavailableError(f"bpg: {tool} not found", HOW_TO_GET)
        return path

    def _run(self, args: Sequence[str], output: Path) -> None:
        """Run one tool call; raise :class:`CodecError` unless it exits 0 and writes ``output``."""
        tool = Path(args[0]).name
        try:
            proc = run_tool(args, self.timeout_s)  # own process group: a timeout kills the tool's children too
        except subprocess.TimeoutExpired:
            raise CodecError(f"bpg: {tool} timed out after {self.timeout_s:g} s: {' '.join(args)}",
                             "raise params.timeout_s in codecs/bpg.yaml or use smaller images") from None
        except OSError as err:
            raise CodecError(f"bpg: cannot run {args[0]}: {err}", HOW_TO_GET) from None
        stderr = proc.stderr.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise CodecError(f"bpg: {tool} exited with status {proc.returncode}: {stderr or '(no stderr)'}",
                             f"check the command: {' '.join(args)}")
        if not output.is_file() or output.stat().st_size == 0:
            raise CodecError(f"bpg: {tool} exited 0 but wrote no {output.name}; stderr: {stderr or '(none)'}",
                             f"check the command: {' '.join(args)}")

    def _tool_version(self, path: str) -> str:
        """Version and default HEVC encoder printed by ``bpgenc -h`` (which exits 1),
        e.g. "0.9.8/x265"; "unknown" when the help text has no version."""
        try:
            proc = run_tool([path, "-h"], min(self.timeout_s, 30.0))
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        text = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        version, encoder = _VERSION_RE.search(text), _ENCODER_RE.search(text)
        if not version:
            return "unknown"
        return version.group(1) + (f"/{encoder.group(1)}" if encoder else "")
