"""The mode strings of the harness as ``Literal`` types (one place; a leaf module).

Each alias names the accepted values of one option; where the code also needs the values at
run time (to check user input), it takes them with ``typing.get_args``.
"""

from __future__ import annotations

from typing import Literal

#: bpp basis: "real" (8 × transmitted bytes / pixels) or "paper" (a codec's formula rate, beside it).
RateBasis = Literal["real", "paper"]
#: `bench compare` / `bench sweep` gate: beyond the tolerances, or an interval excluding 0.
GateKind = Literal["tolerance", "significant"]
#: mIoU over the classes present in the image or GT ("present") or over all classes ("all").
MIoUAverage = Literal["present", "all"]
#: matched-rate search: the largest rate at or below the target, or the closest one.
MatchPolicy = Literal["below", "closest"]
#: how a dataset image is brought to the protocol's size.
Fit = Literal["resize", "center_crop"]
#: table cells with intervals: "value ± half-width" ("pm") or marks only ("none").
IntervalStyle = Literal["pm", "none"]
#: curve intervals: shaded band or error bars.
BandStyle = Literal["band", "bars"]
#: colour channel order a segmentation network expects.
ChannelOrder = Literal["rgb", "bgr"]
#: arithmetic precision of a learned codec on CUDA.
Precision = Literal["fp32", "fp16"]
#: distortion a CompressAI zoo model was trained for.
TrainedFor = Literal["mse", "ms-ssim"]
#: SPIC's lossless label-map coder.
LabelCoderName = Literal["runs", "jpegxl", "png"]
#: where a sweep checkpoint's step/epoch came from.
CheckpointSource = Literal["name", "pattern", "metadata", "name+metadata", "none"]
#: what a component needs.
RequirementKind = Literal["binary", "weights", "package"]
#: how worker processes start ("" when the plan has none).
StartMethod = Literal["fork", "spawn", ""]

#: the clean reference codec (the image itself, lossless): a line in figures, no BD curve of its
#: own, no worst images.
REFERENCE_CODEC = "original"
