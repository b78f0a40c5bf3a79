"""The BPG adapter's plumbing, against fake bpgenc/bpgdec tools (tests/fakes/), and
against the real tools when ``bpgenc`` and ``bpgdec`` are on PATH."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes_bench import only_cards
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from bench.codecs.base import Semantics
from bench.codecs.bpg import BpgCodec
from bench.errors import CodecError, ConfigError, UnavailableError
from bench.execution import runner

FAKES = Path(__file__).resolve().parent / "fakes"
MAGIC = b"FAKEBPG1\n"


def _image() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[100:164, 150:246])  # 64×96 RGB


def _install_fakes(bin_dir: Path) -> Path:
    """Copy the fake tools into ``bin_dir`` as executables run by this Python."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("bpgenc", "bpgdec"):
        target = bin_dir / tool
        target.write_text(f"#!{sys.executable}\n" + (FAKES / f"fake_{tool}.py").read_text())
        target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


@pytest.fixture()
def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake bpgenc/bpgdec first on PATH."""
    bin_dir = _install_fakes(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for var in ("FAKE_BPG_EXIT", "FAKE_BPG_NO_OUTPUT", "FAKE_BPG_SLEEP", "FAKE_BPGDEC_EXIT"):
        monkeypatch.delenv(var, raising=False)
    return bin_dir


@pytest.fixture()
def no_bpg_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH with nothing on it, so no bpgenc/bpgdec can be found."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def _header(encoded_bytes: bytes) -> dict:
    assert encoded_bytes.startswith(MAGIC)
    return json.loads(encoded_bytes[len(MAGIC):].partition(b"\n")[0])


def test_fake_round_trip_and_default_arguments(fake_path: Path) -> None:
    codec = BpgCodec()
    assert [r.found for r in codec.requirements()] == [True, True]
    assert codec.tools["bpgenc"] == str(fake_path / "bpgenc")
    assert codec.version == "bpg-0.9.8-fake/x265"  # parsed from `bpgenc -h`
    image = _image()
    encoded = codec.encode(image, 35)
    assert list(encoded.parts) == ["image"]
    assert _header(encoded.parts["image"]) == {"q": 35, "chroma": "444", "color_space": "ycbcr", "bit_depth": 8}
    recon = codec.decode(encoded.parts)
    assert recon.dtype == np.uint8 and recon.shape == image.shape
    np.testing.assert_array_equal(recon, image)  # the fake stores the PNG losslessly


def test_quantiser_chroma_and_colour_space_reach_bpgenc(fake_path: Path) -> None:
    codec = BpgCodec(chroma="420", color_space="rgb")
    header = _header(codec.encode(_image(), 51).parts["image"])
    assert header == {"q": 51, "chroma": "420", "color_space": "rgb", "bit_depth": 8}
    assert codec.describe()["params"] == {"chroma": "420", "color_space": "rgb", "bit_depth": 8}


def test_knob_direction_and_range(fake_path: Path) -> None:
    knob = BpgCodec.rate_knob
    assert knob.higher_is_better is False
    assert knob.sorted_by_quality([25, 45, 35]) == [45, 35, 25]  # low quality first
    with pytest.raises(ConfigError):
        BpgCodec().encode(_image(), 52)
    with pytest.raises(ConfigError):
        BpgCodec(chroma="411")


def test_encoder_failure_carries_stderr(fake_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BPG_EXIT", "3")
    with pytest.raises(CodecError) as err:
        BpgCodec().encode(_image(), 30)
    assert "status 3" in err.value.problem and "simulated encoder failure" in err.value.problem


def test_decoder_failure_carries_stderr(fake_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    codec = BpgCodec()
    with pytest.raises(CodecError) as err:
        codec.decode({"image": b"not a bpg file"})
    assert "Could not decode image" in err.value.problem
    encoded = codec.encode(_image(), 30)
    monkeypatch.setenv("FAKE_BPGDEC_EXIT", "2")
    with pytest.raises(CodecError, match="simulated decoder failure"):
        codec.decode(encoded.parts)


@pytest.mark.parametrize("mode", ["missing", "empty"])
def test_missing_output_is_an_error(mode: str, fake_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BPG_NO_OUTPUT", mode)
    with pytest.raises(CodecError) as err:
        BpgCodec().encode(_image(), 30)
    assert "wrote no out.bpg" in err.value.problem and "simulated silent failure" in err.value.problem


def test_timeout_is_an_error(fake_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BPG_SLEEP", "5")
    with pytest.raises(CodecError, match="timed out"):
        BpgCodec(timeout_s=0.5).encode(_image(), 30)


def test_configured_paths_override_path_lookup(tmp_path: Path, no_bpg_on_path: None) -> None:
    bin_dir = _install_fakes(tmp_path / "elsewhere")
    codec = BpgCodec(bpgenc=str(bin_dir / "bpgenc"), bpgdec=str(bin_dir / "bpgdec"))
    assert not codec.missing()
    image = _image()
    np.testing.assert_array_equal(codec.decode(codec.encode(image, 40).parts), image)


def test_missing_binaries_are_reported(no_bpg_on_path: None) -> None:
    codec = BpgCodec()
    missing = codec.missing()
    assert [(r.kind, r.name) for r in missing] == [("binary", "bpgenc"), ("binary", "bpgdec")]
    assert all("bellard.org/bpg" in r.detail for r in missing)
    assert codec.version == "bpg-missing"
    bad = BpgCodec(bpgenc="/nonexistent/bpgenc").requirements()[0]
    assert not bad.found and "/nonexistent/bpgenc" in bad.detail


def test_all_codecs_skips_bpg_with_reason_when_absent(no_bpg_on_path: None, monkeypatch: pytest.MonkeyPatch) -> None:
    only_cards(monkeypatch, {"bpg", "jpeg"})
    codecs, skipped = runner.resolve_codecs(["all"], {})
    assert [c.name for c in codecs] == ["jpeg"]
    reasons = dict(skipped)
    assert "bpgenc missing" in reasons["bpg"] and "bellard.org/bpg" in reasons["bpg"]
    with pytest.raises(UnavailableError, match="not available"):
        runner.resolve_codecs(["bpg"], {})  # explicitly asked for: an error, not a skip


def test_bpg_card_uses_the_fakes(fake_path: Path) -> None:
    codecs, skipped = runner.resolve_codecs(["bpg"], {})
    assert [c.name for c in codecs] == ["bpg"] and not skipped
    assert codecs[0].params() == {"chroma": "444", "color_space": "ycbcr", "bit_depth": 8}


REAL_BPG = pytest.mark.skipif(not (shutil.which("bpgenc") and shutil.which("bpgdec")),
                              reason="real bpgenc/bpgdec not on PATH")


@REAL_BPG
def test_real_bpg_rate_and_quality() -> None:
    image = np.ascontiguousarray(data.astronaut()[:256, :384])
    codec = BpgCodec()
    assert codec.version.startswith("bpg-0.9") and "unknown" not in codec.version
    sizes, psnrs = [], []
    for q in (45, 35, 25):
        encoded = codec.encode(image, q)
        recon = codec.decode(encoded.parts)
        assert recon.shape == image.shape and recon.dtype == np.uint8
        sizes.append(encoded.total_bytes)
        psnrs.append(peak_signal_noise_ratio(image, recon, data_range=255))
    assert sizes[0] < sizes[1] < sizes[2]  # lower q → more bytes
    assert psnrs[0] < psnrs[1] < psnrs[2]
    assert psnrs[2] > 35.0, psnrs


@REAL_BPG
@pytest.mark.parametrize("chroma, pixel_format", [("444", 3), ("420", 1)])
def test_real_bpg_header_has_the_asked_format(chroma: str, pixel_format: int) -> None:
    """BPG header: magic, then pixel_format (3 bits) | alpha (1) | bit_depth - 8 (4),
    then color_space (4 bits, 0 = YCbCr) | flags."""
    head = BpgCodec(chroma=chroma).encode(_image(), 35).parts["image"][:6]
    assert head[:4] == b"BPG\xfb"
    assert head[4] >> 5 == pixel_format and head[4] & 0x0F == 0  # 8-bit
    assert head[5] >> 4 == 0


# ---------------------------------------------------------------- reference values (../shared/tools/bpg)
#: ../shared/tools/bpg/README.md: bpgenc/bpgdec 0.9.8 on kodim01.png (768×512), RGB PSNR on
#: 8-bit values, bpp = 8·bytes/(768·512): q → (bpp, PSNR dB) per chroma format.
KODIM01_REFERENCE = {
    "444": {22: (2.8266, 41.526), 27: (1.9177, 37.589), 32: (1.1424, 33.284), 37: (0.5696, 29.348), 42: (0.2356, 26.084)},
    "420": {22: (2.6824, 40.393), 27: (1.8568, 36.890), 32: (1.1163, 32.861), 37: (0.5625, 29.093), 42: (0.2321, 25.981)},
}


def _reference_tools() -> tuple[str, str] | None:
    """The 0.9.8 tools the README's values were measured with: ../shared/tools/bpg, else a
    bpgenc/bpgdec 0.9.8 on PATH (scripts/test.sh puts the shared folder there)."""
    from conftest import SHARED

    folder = SHARED / "tools" / "bpg"
    if (folder / "bpgenc").is_file() and (folder / "bpgdec").is_file():
        return str(folder / "bpgenc"), str(folder / "bpgdec")
    enc, dec = shutil.which("bpgenc"), shutil.which("bpgdec")
    return (enc, dec) if enc and dec else None


@pytest.mark.parametrize("chroma", ["444", "420"])
def test_real_bpg_matches_the_reference_values_on_kodim01(chroma: str) -> None:
    from conftest import SHARED

    tools = _reference_tools()
    if tools is None:
        pytest.skip("no bpgenc/bpgdec (../shared/tools/bpg or PATH)")
    kodim01 = SHARED / "data" / "kodak" / "kodim01.png"
    if not kodim01.is_file():
        pytest.skip(f"{kodim01} not present")
    codec = BpgCodec(chroma=chroma, bpgenc=tools[0], bpgdec=tools[1])
    if not codec.version.startswith("bpg-0.9.8"):
        pytest.skip(f"reference values are for BPG 0.9.8, found {codec.version}")
    with Image.open(kodim01) as im:
        image = np.asarray(im.convert("RGB"))
    h, w = image.shape[:2]
    for q, (bpp, psnr) in KODIM01_REFERENCE[chroma].items():
        encoded = codec.encode(image, q)
        recon = codec.decode(encoded.parts)
        assert round(8 * encoded.total_bytes / (h * w), 4) == bpp, (chroma, q)
        assert peak_signal_noise_ratio(image, recon, data_range=255) == pytest.approx(psnr, abs=0.01), (chroma, q)


@REAL_BPG
def test_spic_run_with_real_bpg_coarse_images(tmp_path: Path, store_path: Path) -> None:
    """A bench run of SPIC (tiny random U-Net, 3 steps) whose coarse image is real BPG 4:2:0."""
    from bench.codecs.spic.adapter import SpicCodec
    from bench.codecs.spic.checkpoint import save_random_checkpoint
    from bench.codecs.spic.unet import UNetConfig
    from bench.execution.runner import RunConfig, execute
    from bench.storage.store import Store

    tiny = {"width": 8, "channel_mult": (1, 1, 1, 1, 1, 1), "num_res_blocks": 1, "num_head_channels": 8,
            "spade_hidden": 4, "norm_groups": 4}
    config = UNetConfig(num_channels=8, channel_mult=(1,) * 6, num_res_blocks=1, num_head_channels=8,
                        spade_hidden=4, norm_groups=4)
    ckpt = save_random_checkpoint(tmp_path / "ema_0.9999_000001.pt", config, seed=0)
    params = dict(tiny, checkpoint=str(ckpt), coarse_codec="bpg", device="cpu", max_iter_time=20)
    codec = SpicCodec(**params)
    assert not codec.missing() and codec.display_name == "SPIC (BPG)"
    store = Store(store_path)
    run_id = execute(RunConfig(dataset="demo", codecs=["spic"], metrics=["psnr"], rates={"spic": ["35"]}, limit=1,
                               codec_params={"spic": params}), store, progress=False)
    [row] = list(store.rows(run_id))
    assert row.status == "ok", row.error
    assert row.bpp == pytest.approx(8 * (row.bytes["labels"] + row.bytes["coarse"]) / (256 * 512))
    meta = store.run(run_id)["meta"]["codecs"]["spic"]
    assert meta["label"] == "SPIC (BPG)" and "coarse=BPG (bpg-0.9.8" in meta["version"]
    assert meta["params"]["coarse_codec"]["params"]["chroma"] == "420"
    # the coarse part is a real BPG file: 4:2:0 (pixel_format 1), 8 bits, 64×128
    image = np.ascontiguousarray(data.astronaut()[:256, :512])
    labels = Semantics(np.zeros((256, 512), np.uint8), "cityscapes19", "ground-truth")
    coarse = codec.encode(image, 35, semantics=labels).parts["coarse"]
    assert coarse[:4] == b"BPG\xfb" and coarse[4] >> 5 == 1 and coarse[4] & 0x0F == 0
    assert codec.coarse.decode({"image": coarse}).shape == (64, 128, 3)
