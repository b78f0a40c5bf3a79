"""One registration path: cards for every kind, entry points, and nothing but component classes.

Issue #23 item 4: a card on BENCH_CARD_PATH whose ``entry`` names a function (``subprocess:call``
with ``params: {args: "...", shell: true}``) used to run that shell command on ``bench list
codecs``, ``bench doctor`` and ``bench run --codecs all``. Card entries now resolve only to
subclasses of the kind's base class, checked before anything is called.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.cli.app import main
from bench.errors import ConfigError
from bench.registry import catalog
from bench.registry.kinds import KINDS


def _evil_cards(root: Path, marker: Path) -> None:
    for kind in ("codecs", "datasets", "metrics", "segmenters"):
        (root / kind).mkdir(parents=True)
    command = f"touch {marker}"
    (root / "codecs" / "evil.yaml").write_text(
        f"name: evil\nentry: subprocess:call\nparams: {{args: \"{command}\", shell: true}}\n")
    (root / "codecs" / "evil2.yaml").write_text(f"name: evil2\nentry: os:system\nparams: {{command: \"{command}\"}}\n")
    (root / "metrics" / "evilm.yaml").write_text(
        f"name: evilm\nentry: subprocess:call\nparams: {{args: \"{command}\", shell: true}}\n")
    (root / "datasets" / "evild.yaml").write_text(
        f"name: evild\nentry: subprocess:Popen\nparams: {{args: \"{command}\", shell: true}}\n")


@pytest.fixture()
def evil(tmp_path, monkeypatch):
    marker = tmp_path / "PWNED"
    _evil_cards(tmp_path / "cards", marker)
    monkeypatch.setenv("BENCH_CARD_PATH", str(tmp_path / "cards"))
    catalog.reset()
    return marker


def test_listing_never_runs_a_card_entry_that_is_not_a_component_class(evil, capsys):
    assert main(["list", "codecs", "-v"]) == 0  # -v: the full reason below each one-line item
    assert main(["list", "metrics"]) == 0
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert not evil.exists()
    line = next(x for x in out.splitlines() if x.startswith("evil "))
    assert "UNAVAILABLE" in line
    assert "not a bench.codecs.base.Codec subclass" in " ".join(out.split())
    assert "jpeg " in out  # the project's own cards are still listed


def test_doctor_never_runs_a_card_entry(evil, capsys):
    assert main(["doctor", "-v"]) == 0  # the full reasons are the details (-v) of the one-line items
    out = capsys.readouterr().out
    assert not evil.exists()
    assert "not a bench.codecs.base.Codec subclass" in out
    assert "not a bench.datasets.base.Dataset subclass" in out


def test_run_all_refuses_the_card_without_running_it(evil, tmp_path, capsys):
    rc = main(["--out", str(tmp_path / "r"), "run", "--codecs", "all", "--dataset", "demo", "--limit", "1",
               "--metrics", "psnr"])
    assert not evil.exists()
    assert rc != 0
    assert "subclass" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["evil", "evil2"])
def test_make_codec_refuses_before_calling(evil, name):
    with pytest.raises(ConfigError, match="only name a component class"):
        catalog.make_codec(name)
    assert not evil.exists()


def test_every_kind_has_a_card_folder_base_class_and_entry_point_group():
    assert set(KINDS) >= {"codec", "dataset", "metric", "segmenter"}
    assert KINDS["metric"].folder == "metrics" and KINDS["codec"].group == "semcodec_bench.codecs"


def test_metrics_are_cards_and_built_under_their_card_name():
    reg = catalog.registry("metric")
    assert {"psnr", "msssim", "lpips", "fid", "kid", "miou"} <= set(reg.names())
    assert reg.get("psnr").source.endswith("metrics/psnr.yaml")
    assert catalog.make_metric("psnr").name == "psnr"


def test_a_card_shared_adapter_takes_the_card_name(tmp_path, monkeypatch):
    """Two cards on one adapter class: each instance carries its own card's name."""
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "photos.yaml").write_text(f"name: photos\nentry: bench.datasets.folder:FolderDataset\n"
                                                      f"params: {{root: {tmp_path}}}\n")
    monkeypatch.setenv("BENCH_CARD_PATH", str(tmp_path))
    catalog.reset()
    assert catalog.make_dataset("photos").name == "photos"
    assert catalog.make_dataset("kodak").name == "kodak"
    assert catalog.make_dataset("folder").name == "folder"


def test_third_party_entry_point_registers_a_codec(tmp_path, monkeypatch):
    """A package installed with ``[project.entry-points."semcodec_bench.codecs"]`` is registered."""
    (tmp_path / "thirdparty_codec.py").write_text(
        "from bench.codecs.pillow_codecs import JpegCodec\n\nclass TPCodec(JpegCodec):\n    name = 'tp-default'\n")
    info = tmp_path / "thirdparty_codec-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-codec\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[semcodec_bench.codecs]\ntpjpeg = thirdparty_codec:TPCodec\n\n"
        "[semcodec_bench.metrics]\ntpbad = subprocess:call\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    catalog.reset()
    codec = catalog.make_codec("tpjpeg")
    assert codec.name == "tpjpeg" and type(codec).__name__ == "TPCodec"
    assert "entry point semcodec_bench.codecs:tpjpeg" in catalog.registry("codec").get("tpjpeg").source
    with pytest.raises(ConfigError, match="subclass"):  # entry points are checked like cards
        catalog.make_metric("tpbad")
    sys.modules.pop("thirdparty_codec", None)


def test_segmenter_cards_plug_into_the_same_machinery(tmp_path, monkeypatch):
    """segmenters/*.yaml cards need nothing but the generic kinds table (issue 24 adds the project's)."""
    (tmp_path / "segmenters").mkdir()
    (tmp_path / "segmenters" / "espnet-half.yaml").write_text(
        "name: espnet-half\nentry: bench.segmenters.espnetv2:ESPNetv2Segmenter\ndescription: test card\n"
        "params: {scale: 0.5}\n")
    (tmp_path / "segmenters" / "shell.yaml").write_text("name: shell\nentry: os:system\ndescription: no\n")
    monkeypatch.setenv("BENCH_CARD_PATH", str(tmp_path))
    catalog.reset()
    seg = catalog.make("segmenter", "espnet-half", allow_random_weights=True)
    assert seg.name == "espnet-half" and seg.scale == 0.5
    with pytest.raises(ConfigError, match="Segmenter subclass"):
        catalog.make("segmenter", "shell")
