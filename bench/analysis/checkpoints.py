"""Checkpoints of a training run found on disk, in training order: the step or epoch from
the file name (Lightning's ``epoch=012.ckpt``, ``step=1200.ckpt``, or ``--step-pattern``),
else from the checkpoint's own ``global_step`` / ``epoch`` (``torch.load(weights_only=True)``),
else the order of the names; each with its content hash (sha256)."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from bench.errors import ConfigError
from bench.modes import CheckpointSource

STEP_RE = re.compile(r"(?<![a-z])step[=_-]?(\d+)", re.IGNORECASE)
EPOCH_RE = re.compile(r"(?<![a-z])epoch[=_-]?(\d+)", re.IGNORECASE)
AXES = ("step", "epoch", "index")


@dataclass
class Checkpoint:
    """One checkpoint file: its content hash and training position (None when unknown)."""

    path: Path
    sha256: str
    step: int | None = None
    epoch: int | None = None
    source: CheckpointSource = "name"  # where step/epoch came from
    x: int = 0  # position on the sweep's axis
    run_id: str | None = None
    skipped: bool = False  # already evaluated (same content and settings)

    @property
    def run(self) -> str:
        """``run_id`` of an evaluated checkpoint (ValueError before it is evaluated)."""
        if self.run_id is None:
            raise ValueError(f"checkpoint {self.path.name} has not been evaluated")
        return self.run_id


def parse_name(name: str, pattern: str | None = None) -> tuple[int | None, int | None]:
    """(step, epoch) from a file name; with ``pattern``, its group ``step`` (or first group) is the step."""
    if pattern:
        try:
            m = re.search(pattern, name)
        except re.error as err:
            raise ConfigError(f"--step-pattern {pattern!r} is not a regular expression: {err}",
                              r"e.g. --step-pattern '_it(\d+)'") from None
        if not m:
            return None, None
        if "step" not in m.groupdict() and m.re.groups < 1:
            raise ConfigError(f"--step-pattern {pattern!r} has no group to take the step from",
                              r"put the digits in a group: --step-pattern '_it(\d+)' or '(?P<step>\d+)'")
        group = m.group("step") if "step" in m.groupdict() else m.group(1)
        if group is None or not group.isdigit():
            raise ConfigError(f"--step-pattern {pattern!r} gives {group!r} for {name}, not a step number",
                              r"match only digits in the group, e.g. (\d+)")
        return int(group), None
    s, e = STEP_RE.search(name), EPOCH_RE.search(name)
    return (int(s.group(1)) if s else None), (int(e.group(1)) if e else None)


def read_metadata(path: Path) -> tuple[int | None, int | None]:
    """(global_step, epoch) stored in a Lightning checkpoint (``weights_only=True``; None when absent or unreadable)."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint, pickled objects, a folder …: no metadata
        return None, None
    if not isinstance(obj, dict):
        return None, None

    def num(key: str) -> int | None:
        v = obj.get(key)
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    return num("global_step"), num("epoch")


def find_checkpoints(pattern: str, step_pattern: str | None = None) -> tuple[list[Checkpoint], str]:
    """The checkpoint files matching the glob ``pattern`` in training order, and the axis
    ("step", "epoch" or "index") their ``x`` is on. A pattern ending in "/" matches folders
    instead (split checkpoints, e.g. SQ-GAN's parts), hashed with every file inside."""
    from bench.runtime.weights import sha256_path

    folders = pattern.endswith(("/", os.sep))
    matched = sorted(glob.glob(str(Path(pattern).expanduser()) + ("/" if folders else ""), recursive=True))
    paths = [Path(p) for p in matched if (Path(p).is_dir() if folders else Path(p).is_file())]
    if not paths:
        what = "folder" if folders else "file"
        raise ConfigError(f"no checkpoint {what} matches {pattern!r}",
                          "quote the glob, e.g. --checkpoints 'runs/exp1/*.ckpt' (files) or 'runs/exp1/step=*/' "
                          "(folders of split checkpoints)")
    found = []
    for p in paths:
        step, epoch = parse_name(p.name, step_pattern)
        source: CheckpointSource = "pattern" if step_pattern else "name"
        if step is None and not step_pattern and p.is_file():
            meta_step, meta_epoch = read_metadata(p)
            if meta_step is not None or (epoch is None and meta_epoch is not None):
                source = "metadata" if epoch is None else "name+metadata"
            step, epoch = meta_step, epoch if epoch is not None else meta_epoch
        found.append(Checkpoint(p, sha256_path(p), step, epoch, source if (step, epoch) != (None, None) else "none"))
    axis = "index"
    for name in ("step", "epoch"):
        values = [getattr(c, name) for c in found]
        if None not in values and len(set(values)) == len(values):
            axis = name
            break
    for i, c in enumerate(found):
        c.x = getattr(c, axis) if axis != "index" else i
    return sorted(found, key=lambda c: (c.x, c.path.name)), axis
