"""Named evaluation protocols ("presets") of a dataset, read from its card.

A dataset card may hold a ``protocols:`` mapping (data, not code)::

    protocols:
      sqgan:
        source: SQ-GAN Sec. V; official data/cityscapes_base.py ...
        dataset: {height: 256, width: 512, fit: resize, image_resample: bilinear,
                  label_resample: nearest-torch, classes: trainid19}
        sender_labels: ground-truth          # ground-truth | segmenter
        sender_segmenter: null               # the paper's sender segmenter (recorded)
        miou_average: all                    # present | all
        segmenter: UperNet-InternImage-XL    # the paper's evaluation segmenter (recorded)
        segmenter_input: ...                 # what the paper's segmenter is fed (recorded)
        eval_segmenter: espnetv2             # the segmenter card the mIoU metric uses here

``bench run --protocol NAME`` applies one: its ``dataset`` params replace the card's
(a conflicting ``--param`` is refused), the mIoU metric gets ``average`` (unless
``--param miou.average=…`` says otherwise) and the segmenter card ``eval_segmenter`` (unless
``--param miou.segmenter=…`` names another; without ``--protocol`` the card's top-level
``eval_segmenter``), and ``sender_labels: segmenter`` gives semantic
codecs' senders the configured segmenter's map (the paper's own segmenter is recorded;
its weights are not bundled). Without ``--protocol`` the card's params are used
unchanged and the run records protocol ``card``. The whole preset is recorded in the run
metadata (``meta["protocol"]``) and is part of the run id; ``bench compare`` refuses
runs made under different protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, get_args

from bench.modes import MIoUAverage

from ..errors import ConfigError
from .base import IMAGE_MODE_POLICY

CARD = "card"
DATASET_KEYS: tuple[str, ...] = ("height", "width", "fit", "image_resample", "label_resample", "classes")
SENDER_LABELS: tuple[str, ...] = ("ground-truth", "segmenter")
AVERAGES: tuple[str, ...] = get_args(MIoUAverage)


@dataclass(frozen=True)
class ProtocolPreset:
    """One named protocol of one dataset (see the module docstring for the fields)."""

    name: str
    dataset_name: str
    source: str
    dataset: Mapping[str, Any] = field(default_factory=dict)
    sender_labels: str = "ground-truth"
    sender_segmenter: str | None = None
    miou_average: str = "present"
    segmenter: str | None = None
    segmenter_input: str | None = None
    eval_segmenter: str | None = None

    @classmethod
    def from_card(cls, dataset_name: str, name: str, spec: Any, source_file: str) -> ProtocolPreset:
        where = f"protocol {name!r} of {source_file}"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where} is not a mapping", "see bench/datasets/presets.py for the fields")
        known = {"source", "dataset", "sender_labels", "sender_segmenter", "miou_average", "segmenter",
                 "segmenter_input", "eval_segmenter"}
        extra = set(spec) - known
        if extra:
            raise ConfigError(f"{where} has unknown fields {sorted(extra)}", f"use only {sorted(known)}")
        params = dict(spec.get("dataset") or {})
        bad = set(params) - set(DATASET_KEYS)
        if bad:
            raise ConfigError(f"{where}: dataset fields {sorted(bad)} are not protocol fields",
                              f"a protocol fixes only {', '.join(DATASET_KEYS)}")
        preset = cls(name, dataset_name, str(spec.get("source") or ""), params,
                     str(spec.get("sender_labels", "ground-truth")), spec.get("sender_segmenter"),
                     str(spec.get("miou_average", "present")), spec.get("segmenter"), spec.get("segmenter_input"),
                     spec.get("eval_segmenter"))
        if preset.sender_labels not in SENDER_LABELS:
            raise ConfigError(f"{where}: sender_labels={preset.sender_labels!r}", f"use one of {SENDER_LABELS}")
        if preset.miou_average not in AVERAGES:
            raise ConfigError(f"{where}: miou_average={preset.miou_average!r}", f"use one of {AVERAGES}")
        if not preset.source:
            raise ConfigError(f"{where} has no source", "name the paper section or official file it follows")
        return preset

    def record(self) -> dict[str, Any]:
        """Everything the preset fixes, as recorded in the run metadata and its id."""
        out = asdict(self)
        out["dataset"] = dict(self.dataset)
        return out


def card_preset(dataset_name: str) -> ProtocolPreset:
    """The implicit protocol of a run without ``--protocol``: the card's params as they are,
    and the card's ``eval_segmenter`` (None for a dataset that is not a registered card)."""
    from bench.registry import catalog

    reg = catalog.registry("dataset")
    seg = reg.get(dataset_name).card.get("eval_segmenter") if dataset_name in reg else None
    return ProtocolPreset(CARD, dataset_name, f"datasets/{dataset_name}.yaml params (no --protocol)",
                          eval_segmenter=str(seg) if seg else None)


def protocols_of(dataset_name: str) -> dict[str, ProtocolPreset]:
    """The named presets of a dataset's card (empty when it lists none)."""
    from bench.registry import catalog

    entry = catalog.registry("dataset").get(dataset_name)
    specs = entry.card.get("protocols") or {}
    if not isinstance(specs, Mapping):
        raise ConfigError(f"'protocols' of {entry.source} must be a mapping", "write protocols: {name: {...}}")
    return {str(n): ProtocolPreset.from_card(dataset_name, str(n), s, entry.source) for n, s in specs.items()}


def resolve(dataset_name: str, name: str | None) -> ProtocolPreset:
    """The preset ``name`` of the dataset (None or "card": the card's own params)."""
    if name in (None, "", CARD):
        return card_preset(dataset_name)
    presets = protocols_of(dataset_name)
    if name not in presets:
        have = ", ".join(presets) or "none"
        raise ConfigError(f"dataset {dataset_name!r} has no protocol {name!r} (it has: {have})",
                          "use --protocol with one of those, or add it under 'protocols:' in the dataset's card")
    return presets[name]


@dataclass
class Applied:
    """A run's settings after applying a preset, and what the run records about it."""

    dataset_params: dict[str, Any]
    metric_params: dict[str, dict[str, Any]]
    semantics_segmenter: dict[str, Any] | None
    record: dict[str, Any]


def apply(preset: ProtocolPreset, dataset_params: Mapping[str, Any], metric_params: Mapping[str, Mapping[str, Any]],
          semantics_segmenter: Mapping[str, Any] | None) -> Applied:
    """Merge ``preset`` into a run's dataset params, metric params and sender label source.

    A dataset param the preset fixes may not be overridden with another value; the mIoU
    averaging is the preset's unless ``metric_params["miou"]["average"]`` is given (then
    recorded as an override); ``sender_labels: ground-truth`` refuses a configured
    segmenter, ``segmenter`` uses the configured one (default: the default segmenter).
    """
    ds = dict(dataset_params)
    for key, value in preset.dataset.items():
        if key in ds and ds[key] != value:
            raise ConfigError(
                f"protocol {preset.name!r} fixes {preset.dataset_name}.{key}={value!r}; --param gives {ds[key]!r}",
                f"drop --param {preset.dataset_name}.{key}, or run without --protocol (the card's params)")
        ds[key] = value
    mp = {k: dict(v) for k, v in metric_params.items()}
    record = preset.record()
    record["image_modes"] = dict(IMAGE_MODE_POLICY)
    if preset.eval_segmenter:  # the mIoU segmenter card, unless --param miou.segmenter names one
        user_seg = mp.get("miou", {}).get("segmenter")
        if user_seg is None:
            mp.setdefault("miou", {})["segmenter"] = preset.eval_segmenter
        record["miou_segmenter_used"] = str(user_seg or preset.eval_segmenter)
    if preset.name != CARD:
        user = mp.get("miou", {}).get("average")
        if user is not None:
            record["miou_average_used"] = str(user)
        else:
            mp.setdefault("miou", {})["average"] = preset.miou_average
            record["miou_average_used"] = preset.miou_average
    seg = dict(semantics_segmenter) if semantics_segmenter is not None else None
    if preset.name != CARD:
        if preset.sender_labels == "ground-truth" and seg is not None:
            raise ConfigError(f"protocol {preset.name!r} gives senders the ground-truth label maps, "
                              "but --semantics segmenter was asked",
                              "drop --semantics segmenter, or run without --protocol")
        if preset.sender_labels == "segmenter" and seg is None:
            seg = {}  # the default segmenter; the paper's (sender_segmenter) is recorded beside it
    return Applied(ds, mp, seg, record)
