"""Provenance recorded with every run: git sha, package versions, machine."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from typing import Any

from bench.registry.cards import PROJECT_ROOT

PACKAGES = ("semcodec-bench", "numpy", "pillow", "imagecodecs", "torch", "torchvision", "pytorch-msssim",
            "lpips", "torch-fidelity", "compressai", "scikit-image", "pandas")


def git_sha() -> str | None:
    """HEAD of the project checkout, with ``-dirty`` when the tree has local changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                            "processor": platform.machine()}
    try:
        import torch

        info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["device"] = "cpu"
    return info
