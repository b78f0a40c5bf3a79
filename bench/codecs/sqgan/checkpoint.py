"""Load and write SQ-GAN weights in the official layouts.

Two forms are read (both as published by the authors' training code):

- a PyTorch Lightning ``.ckpt`` file: ``{"state_dict": {"encoder.conv_in.0.weight": …}, …}``
  with keys prefixed by the submodule attribute (``encoder``, ``decoder``, ``masker``,
  ``demasker``, ``quantize`` and ``*_semantic`` twins), plus training-only ``loss.*``
  keys (discriminator, LPIPS) that are ignored;
- "split parts": a folder with one plain state_dict per submodule, ``<attr>.ckpt``.

Keys are checked strictly over the inference modules (the official loader uses
``strict=False``, which silently leaves layers random when names drift). Files are read
with ``torch.load(weights_only=True)``. A Lightning file whose extra entries hold
non-tensor Python objects (e.g. OmegaConf hyper-parameters) cannot be read that way; it
is refused unless ``trust_pickle=True`` (full unpickling runs code from the file: only
for a file you trust), or converted once with
``python -m bench.codecs.sqgan.checkpoint convert IN.ckpt OUT.ckpt``.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.runtime.weights import check_keys, load_state_dict, sha256_file

from ...errors import WeightsError
from .model import MODULE_NAMES, SQGAN

TRAINING_ONLY_PREFIXES: tuple[str, ...] = ("loss.",)


@dataclass
class LoadReport:
    """What was loaded: path, form ("lightning" | "parts"), sha256 and ignored keys."""

    path: str
    form: str
    sha256: str
    ignored: list[str] = field(default_factory=list)

    @property
    def note(self) -> str:
        if not self.ignored:
            return ""
        heads = sorted({".".join(k.split(".")[:2]) for k in self.ignored})
        return f"ignored {len(self.ignored)} training-only keys ({', '.join(heads)})"


def _load_lightning(path: Path, trust_pickle: bool) -> dict[str, Any]:
    # refused: not tensors-only, broken, or no torch file at all (pickle reads text as opcodes: KeyError)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError) as err:
        if not trust_pickle:
            raise WeightsError(
                f"cannot read {path} with torch.load(weights_only=True): {(str(err).splitlines() or [repr(err)])[0]}",
                "convert it once with `python -m bench.codecs.sqgan.checkpoint convert IN.ckpt OUT.ckpt` "
                "(full unpickling: only for a file you trust), or set the codec param trust_pickle: true",
            ) from None
        obj = torch.load(path, map_location="cpu", weights_only=False)  # trusted by the user
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"]
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj  # already a plain prefixed state_dict
    raise WeightsError(f"{path} is neither a Lightning checkpoint (no 'state_dict') nor a state_dict",
                       "give the SQ-GAN .ckpt written by the authors' train.py, or a folder of split parts")


def _load_parts(folder: Path) -> tuple[dict[str, torch.Tensor], list[str], str]:
    files = {p.stem: p for p in sorted(folder.glob("*.ckpt"))}
    if not files:
        raise WeightsError(f"{folder} holds no <module>.ckpt files",
                           f"the split-parts form needs {', '.join(n + '.ckpt' for n in MODULE_NAMES)}")
    missing = [n for n in MODULE_NAMES if n not in files]
    if missing:
        raise WeightsError(f"{folder}: split parts missing for {', '.join(missing)}",
                           "copy every part written by the authors' checkpoint splitting step")
    merged: dict[str, torch.Tensor] = {}
    digest = hashlib.sha256()
    for name in MODULE_NAMES:
        digest.update(f"{name}:{sha256_file(files[name])}\n".encode())
        merged.update({f"{name}.{k}": v for k, v in load_state_dict(files[name]).items()})
    extra = [f"{n}.ckpt" for n in files if n not in MODULE_NAMES]
    return merged, extra, digest.hexdigest()


def load_official(model: SQGAN, path: str | Path, *, trust_pickle: bool = False) -> LoadReport:
    """Load official SQ-GAN weights (Lightning file or split-parts folder) into ``model``.

    Raises :class:`WeightsError` listing missing/unexpected keys or mismatched shapes.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise WeightsError(f"SQ-GAN checkpoint {p} does not exist",
                           "set params.checkpoint or $SQGAN_CHECKPOINT to the authors' .ckpt or parts folder")
    if p.is_dir():
        sd, ignored, digest = _load_parts(p)
        form = "parts"
    else:
        sd, form, digest = _load_lightning(p, trust_pickle), "lightning", sha256_file(p)
        ignored = [k for k in sd if k.startswith(TRAINING_ONLY_PREFIXES)]
        sd = {k: v for k, v in sd.items() if not k.startswith(TRAINING_ONLY_PREFIXES)}
    expected = model.state_dict()
    check_keys(set(expected), set(sd), f"SQ-GAN checkpoint {p}")
    bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if sd[k].shape != v.shape]
    if bad:
        raise WeightsError(
            f"SQ-GAN checkpoint {p}: {len(bad)} tensors have other shapes than the model: {'; '.join(bad[:6])}",
            "pick the model preset (params.model) that the checkpoint was trained with",
        )
    model.load_state_dict(sd, strict=True)
    return LoadReport(str(p), form, digest, ignored)


def save_official_layout(model: SQGAN, path: str | Path, *, form: str = "lightning",
                         with_training_keys: bool = True) -> Path:
    """Write ``model`` in an official layout (used by tests and for converted weights).

    ``form="lightning"``: one file ``{"state_dict": …, "epoch", "global_step", …}`` with
    prefixed keys (plus a dummy ``loss.discriminator`` tensor when ``with_training_keys``);
    ``form="parts"``: a folder with one ``<attr>.ckpt`` plain state_dict per submodule.
    """
    p = Path(path)
    if form == "parts":
        p.mkdir(parents=True, exist_ok=True)
        for name in MODULE_NAMES:
            torch.save(getattr(model, name).state_dict(), p / f"{name}.ckpt")
        return p
    if form != "lightning":
        raise ValueError(f"form must be 'lightning' or 'parts', got {form!r}")
    sd = dict(model.state_dict())
    if with_training_keys:
        sd["loss.discriminator.main.0.weight"] = torch.zeros(4, 3, 4, 4)
        sd["loss.perceptual_loss.net.slice1.0.weight"] = torch.zeros(4, 3, 3, 3)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": sd, "epoch": 0, "global_step": 0, "pytorch-lightning_version": "1.9.0"}, p)
    return p


def convert(src: str | Path, dst: str | Path) -> Path:
    """Re-save a trusted Lightning checkpoint as ``{"state_dict": tensors}`` (weights_only-safe)."""
    obj = torch.load(src, map_location="cpu", weights_only=False)  # the user vouches for src
    sd = obj["state_dict"] if isinstance(obj, dict) and "state_dict" in obj else obj
    torch.save({"state_dict": {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}}, dst)
    return Path(dst)


if __name__ == "__main__":  # python -m bench.codecs.sqgan.checkpoint convert IN OUT
    if len(sys.argv) != 4 or sys.argv[1] != "convert":
        print("usage: python -m bench.codecs.sqgan.checkpoint convert IN.ckpt OUT.ckpt", file=sys.stderr)
        raise SystemExit(2)
    print(convert(sys.argv[2], sys.argv[3]))
