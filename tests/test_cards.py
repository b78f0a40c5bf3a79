"""Contract over every card the project ships (codecs/, datasets/, metrics/ and segmenters/ when
present): each one builds from its card alone, under its card's name, and declares what the
harness relies on — a rate knob whose card rates it accepts, its requirements, a version."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from bench.codecs.base import Codec, RateKnob, Requirement
from bench.datasets.base import Dataset
from bench.errors import ConfigError
from bench.metrics.base import Metric
from bench.registry import cards, catalog
from bench.registry.kinds import KINDS

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT_KINDS = {"binary", "weights", "package"}


def _cards(folder: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / folder).glob("*.yaml"))


CODECS, DATASETS, METRICS = _cards("codecs"), _cards("datasets"), _cards("metrics")


def test_every_card_file_is_found_named_after_its_file_and_checked():
    assert len(CODECS) >= 20 and len(DATASETS) >= 5 and len(METRICS) >= 6
    for kind in KINDS.values():
        for path in sorted((ROOT / kind.folder).glob("*.y*ml")):
            card = yaml.safe_load(path.read_text())
            assert card["name"] == path.stem, f"{path}: card name {card['name']!r} differs from its file name"
            entry = cards.read_card(path, kind.name)
            assert entry.name in catalog.registry(kind.name)
            assert isinstance(entry.card.get("description"), str) and entry.card["description"].strip(), path


def _requirements_ok(reqs: object) -> None:
    assert isinstance(reqs, list)
    for r in reqs:
        assert isinstance(r, Requirement) and r.kind in REQUIREMENT_KINDS, r
        assert isinstance(r.name, str) and r.name and isinstance(r.found, bool) and isinstance(r.detail, str)


@pytest.mark.parametrize("name", CODECS)
def test_codec_card_contract(name):
    codec = catalog.make_codec(name)
    assert isinstance(codec, Codec) and codec.name == name and codec.card["name"] == name
    assert isinstance(codec.version, str) and codec.version
    knob = codec.rate_knob
    assert isinstance(knob, RateKnob) and knob.name and isinstance(knob.higher_is_better, bool)
    assert knob.values, f"{name}: the rate knob declares no default rate points"
    rates = catalog.codec_rates(codec)  # the card's rates (or the knob's defaults), each checked by the knob
    assert rates and len(set(map(str, rates))) == len(rates), f"{name}: repeated rate points {rates}"
    if codec.card.get("rates"):
        assert rates == list(codec.card["rates"])
    for value in rates:
        if isinstance(value, (int, float)):
            assert math.isfinite(value)
            if knob.minimum is not None:
                assert value >= knob.minimum
            if knob.maximum is not None:
                assert value <= knob.maximum
    _requirements_ok(codec.requirements())
    described = codec.describe()
    assert described["name"] == name and described["version"] == codec.version


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_card_contract(name):
    ds = catalog.make_dataset(name)
    assert isinstance(ds, Dataset) and ds.name == name and ds.card["name"] == name
    protocol = ds.protocol()
    assert protocol["dataset"] == name
    if protocol.get("class_set") is not None:  # a labelled dataset declares its class set
        assert ds.class_set is not None and protocol["class_set"] == ds.class_set.name


@pytest.mark.parametrize("name", METRICS)
def test_metric_card_contract(name):
    metric = catalog.make_metric(name)
    assert isinstance(metric, Metric) and metric.name == name and metric.card["name"] == name
    assert isinstance(metric.version, str) and metric.version
    assert isinstance(metric.higher_is_better, bool)
    _requirements_ok(metric.requirements())
    assert metric.describe()["name"] == name
    labels, tolerances = metric.card.get("labels") or {}, metric.card.get("delta_tolerance") or {}
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in labels.items()), labels
    assert all(isinstance(v, (int, float)) and 0 <= v < 1 for v in tolerances.values()), tolerances
    assert set(tolerances) <= set(labels), "a tolerance for a key the card does not name"


def test_a_card_that_breaks_the_contract_is_caught(tmp_path, monkeypatch):
    """The contract can fail: a card whose rates the knob refuses is rejected."""
    (tmp_path / "codecs").mkdir()
    (tmp_path / "codecs" / "badjpeg.yaml").write_text(
        "name: badjpeg\nentry: bench.codecs.pillow_codecs:JpegCodec\nrates: [0, 500]\n")
    monkeypatch.setenv("BENCH_CARD_PATH", str(tmp_path))
    catalog.reset()
    codec = catalog.make_codec("badjpeg")
    with pytest.raises(ConfigError, match="outside"):
        catalog.codec_rates(codec)
