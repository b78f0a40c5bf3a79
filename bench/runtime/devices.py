"""The torch device a network runs on: one rule for metrics, segmenters and learned codecs.

``None``, "" or "auto" mean CUDA when this machine has it, else the CPU. An explicit device
("cpu", "cuda", "cuda:1", "mps") is checked against the machine before any work starts, so
``--device cuda`` on a machine without a GPU is a configuration error with a fix (exit 2),
not a driver message in the middle of a run.
"""

from __future__ import annotations

from bench.errors import ConfigError

AUTO = (None, "", "auto")


def resolve_device(requested: str | None = None) -> str:
    """``requested`` as a torch device string ("cpu", "cuda", "cuda:1", …), checked to exist
    here; :class:`ConfigError` otherwise."""
    import torch

    if requested in AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(str(requested))
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {requested!r}", "use cpu, cuda, cuda:N or mps "
                          "(or leave the device out: CUDA when available, else the CPU)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {requested!r}: this machine has no usable CUDA device",
                              "use --device cpu, or leave --device out (CUDA when available, else the CPU)")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {requested!r}: this machine has {count} CUDA device(s)",
                              f"use cuda:0 … cuda:{count - 1}")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"device {requested!r}: MPS is not available here", "use --device cpu")
    elif device.type != "cpu":
        raise ConfigError(f"device {requested!r} is not supported", "use cpu, cuda, cuda:N or mps")
    return str(device)
