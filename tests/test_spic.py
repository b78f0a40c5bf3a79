"""SPIC adapter: lossless label coders, strict checkpoint loading, the official sampler
timesteps, seeded reproducibility, bpp accounting, and an end-to-end run on the demo set."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.codecs.base import Semantics
from bench.codecs.spic import diffusion
from bench.codecs.spic.adapter import SpicCodec
from bench.codecs.spic.checkpoint import describe_file, load_model, save_random_checkpoint
from bench.codecs.spic.labelcoder import LABEL_CODERS, make_label_coder
from bench.codecs.spic.unet import SpadeSRUNet, UNetConfig, one_hot_labels
from bench.errors import CodecError, WeightsError

COCO_LABELS = "data/coco/stuffthingmaps_trainval2017/val2017"
OFFICIAL_TIMESTEPS = [0, 10, 20, 30, 40, 50, 61, 71, 81, 91, 101, 111, 121, 131, 141, 151, 161, 172, 182, 192]
# tiny U-Net: official layout (6 levels, attention at ds 8/16/32, SPADE decoder), small widths
TINY = {"width": 8, "channel_mult": (1, 1, 1, 1, 1, 1), "num_res_blocks": 1, "num_head_channels": 8,
            "spade_hidden": 4, "norm_groups": 4}
TINY_CONFIG = UNetConfig(num_channels=8, channel_mult=(1, 1, 1, 1, 1, 1), num_res_blocks=1,
                         num_head_channels=8, spade_hidden=4, norm_groups=4)


def cityscapes_like(seed: int, h: int = 256, w: int = 512) -> np.ndarray:
    """A synthetic street-scene trainId map: sky, buildings, vegetation, road, sidewalk,
    slanted boundaries, cars, poles, people, traffic signs and void specks."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    lab = np.full((h, w), 2, np.uint8)  # building
    horizon = int(h * rng.uniform(0.45, 0.6))
    sky_line = (h * 0.25 + 20 * np.sin(x / rng.uniform(30, 80))).astype(int)
    lab[y < sky_line] = 10  # sky
    lab[(y >= sky_line) & (y < sky_line + 30) & (x < w * 0.3)] = 8  # vegetation
    lab[y >= horizon] = 0  # road
    lab[(y >= horizon) & (y - horizon < (w * 0.25 - x) * 0.4)] = 1  # sidewalk, slanted
    for _ in range(6):  # cars
        cx, cy = rng.integers(0, w - 60), rng.integers(horizon - 10, h - 30)
        lab[cy:cy + rng.integers(15, 40), cx:cx + rng.integers(30, 80)] = 13
    for _ in range(4):  # poles and signs
        px = rng.integers(0, w - 3)
        lab[sky_line.min():horizon, px:px + 2] = 5
        lab[sky_line.min():sky_line.min() + 8, px - 3:px + 5] = 7
    for _ in range(5):  # people (ellipses)
        cx, cy = rng.integers(10, w - 10), rng.integers(horizon - 20, h - 20)
        lab[((x - cx) / 4.0) ** 2 + ((y - cy) / 12.0) ** 2 < 1] = 11
    lab[rng.random((h, w)) < 0.002] = 255  # void specks
    return lab


# --------------------------------------------------------------------------- label coders
def _png_size(labels: np.ndarray) -> int:
    return len(make_label_coder("png").encode(labels))


def test_label_coders_lossless_on_synthetic_maps() -> None:
    maps = [cityscapes_like(s) for s in range(2)]
    maps.append(np.zeros((5, 7), np.uint8))  # trivial
    maps.append(np.random.default_rng(0).integers(0, 256, (17, 23)).astype(np.uint8))  # noise, all values
    sizes = {name: 0 for name in LABEL_CODERS}
    for labels in maps:
        for name in LABEL_CODERS:
            coder = make_label_coder(name)
            data = coder.encode(labels)
            decoded = coder.decode(data)
            assert decoded.dtype == np.uint8 and np.array_equal(decoded, labels), name
            if labels.shape == (256, 512):
                sizes[name] += len(data)
    assert sizes["runs"] < 0.6 * sizes["png"], sizes
    # random isolated void specks are the run coder's worst case: about JPEG XL's size here
    assert sizes["runs"] < 1.1 * sizes["jpegxl"], sizes


def test_run_coder_beats_jpegxl_on_demo_labels() -> None:
    """On the demo set's synthetic Cityscapes maps (compact regions) the run coder is smaller
    than JPEG XL lossless and PNG, and still exact."""
    from bench.datasets.demo import DemoDataset

    ds = DemoDataset()
    totals = {name: 0 for name in LABEL_CODERS}
    for image_id in ds.ids()[:3]:
        labels = ds.load(image_id).labels
        for name in LABEL_CODERS:
            data = make_label_coder(name).encode(labels)
            totals[name] += len(data)
        assert np.array_equal(make_label_coder("runs").decode(make_label_coder("runs").encode(labels)), labels)
    assert totals["runs"] < 0.9 * totals["jpegxl"] < totals["png"], totals


def test_label_coders_lossless_on_coco_stuff(shared_dir: Path) -> None:
    files = sorted((shared_dir / COCO_LABELS).glob("*.png"))[:4]
    assert files, "COCO-Stuff label maps missing from shared/"
    totals = {name: 0 for name in LABEL_CODERS}
    for path in files:
        labels = np.asarray(Image.open(path))
        assert labels.dtype == np.uint8 and labels.ndim == 2
        for name in LABEL_CODERS:
            coder = make_label_coder(name)
            data = coder.encode(labels)
            assert np.array_equal(coder.decode(data), labels), (name, path.name)
            totals[name] += len(data)
        # the shipped PNG is an independent upper reference for our PNG setting
        assert _png_size(labels) <= path.stat().st_size * 1.05
    # our run coder beats JPEG XL lossless (effort 9) and PNG on real maps
    assert totals["runs"] < 0.9 * totals["jpegxl"] < totals["png"], totals


def test_run_coder_rejects_corrupt_stream() -> None:
    coder = make_label_coder("runs")
    data = coder.encode(cityscapes_like(3, 64, 128))
    with pytest.raises(CodecError):
        coder.decode(b"\x09" + data[1:])  # wrong version byte
    with pytest.raises(CodecError):
        coder.decode(data[:1])  # header truncated


# --------------------------------------------------------------------------- network, checkpoint
def test_one_hot_drops_void() -> None:
    lab = torch.tensor([[[0, 18, 255, 19]]])
    oh = one_hot_labels(lab, 19)
    assert oh.shape == (1, 19, 1, 4)
    assert oh[0, 0, 0, 0] == 1 and oh[0, 18, 0, 1] == 1
    assert oh[0, :, 0, 2].sum() == 0 and oh[0, :, 0, 3].sum() == 0


def test_official_key_layout() -> None:
    keys = set(SpadeSRUNet(TINY_CONFIG).state_dict())
    # names that only the official guided-diffusion / SDM layout has
    for key in ["time_embed.0.weight", "time_embed.2.weight", "input_blocks.0.0.weight",
                "input_blocks.1.0.in_layers.0.weight", "input_blocks.1.0.in_layers.2.weight",
                "input_blocks.1.0.emb_layers.1.weight", "input_blocks.1.0.out_layers.3.weight",
                "middle_block.0.in_norm.mlp_shared.0.weight", "middle_block.0.in_norm.mlp_gamma.weight",
                "middle_block.0.out_norm.mlp_beta.bias", "middle_block.0.in_layers.1.weight",
                "middle_block.0.out_layers.2.weight", "middle_block.1.qkv.weight", "middle_block.1.proj_out.weight",
                "output_blocks.0.0.skip_connection.weight", "out.0.weight", "out.2.weight"]:
        assert key in keys, key
    assert not any(k.startswith("module.") for k in keys)
    # input conv takes noisy image ⊕ upsampled coarse image; output ε ⊕ variance
    sd = SpadeSRUNet(TINY_CONFIG).state_dict()
    assert sd["input_blocks.0.0.weight"].shape[1] == 6 and sd["out.2.weight"].shape[0] == 6
    assert sd["middle_block.0.in_norm.mlp_shared.0.weight"].shape[1] == 19
    # attention only at downsample factors 8, 16, 32 (levels 3, 4, 5 of 6) and in the middle
    att = sorted({int(k.split(".")[1]) for k in keys if k.startswith("input_blocks") and ".qkv." in k})
    assert att == [7, 9, 11]  # 1 conv + per level (1 res block + 1 downsample): level 3 → block 7


def test_official_parameter_count() -> None:
    """The full-size default network has the official 653.0 M parameters (counted with the
    reference code: 653,012,230) — computed from shapes only, nothing is allocated."""
    with torch.device("meta"):
        model = SpadeSRUNet(UNetConfig())
    assert sum(p.numel() for p in model.parameters()) == 653_012_230


def test_checkpoint_loads_strictly_and_reports_mismatch(tmp_path: Path) -> None:
    path = save_random_checkpoint(tmp_path / "ema_0.9999_120000.pt", TINY_CONFIG, seed=1)
    assert describe_file(path) == {"kind": "ema", "step": 120000, "ema_rate": 0.9999}
    model = load_model(path, TINY_CONFIG)
    saved = torch.load(path, weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())

    wrong = dict(saved)
    wrong["middle_block.0.in_norm.extra.weight"] = torch.zeros(1)
    del wrong["out.2.weight"]
    torch.save(wrong, tmp_path / "model000010.pt")
    with pytest.raises(WeightsError) as err:
        load_model(tmp_path / "model000010.pt", TINY_CONFIG)
    assert "out.2.weight" in str(err.value) and "middle_block.0.in_norm.extra.weight" in str(err.value)

    wider = UNetConfig(**{**TINY_CONFIG.as_dict(), "num_channels": 16, "channel_mult": (1,) * 6,
                          "attention_ds": (8, 16, 32)})
    with pytest.raises(WeightsError, match="wrong shape"):
        load_model(path, wider)

    torch.save({"model": saved}, tmp_path / "wrapped.pt")
    with pytest.raises(WeightsError, match="missing"):
        load_model(tmp_path / "wrapped.pt", TINY_CONFIG)


# --------------------------------------------------------------------------- sampler
def test_official_timesteps() -> None:
    assert diffusion.official_timesteps(1000, "100", 200) == OFFICIAL_TIMESTEPS
    full = diffusion.space_timesteps(1000, "100")
    assert len(full) == 100 and full[0] == 0 and full[-1] == 999
    assert diffusion.space_timesteps(300, "10,15,20")[:3] == [0, 11, 22]  # guided-diffusion docstring case
    assert len(diffusion.space_timesteps(300, "10,15,20")) == 45
    assert diffusion.space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))


def test_respaced_schedule_keeps_alpha_bar() -> None:
    base = diffusion.linear_betas(1000)
    assert base[0] == pytest.approx(1e-4) and base[-1] == pytest.approx(0.02)
    sched = diffusion.RespacedSchedule.from_base(base, OFFICIAL_TIMESTEPS)
    alpha_bar = np.cumprod(1 - base)
    np.testing.assert_allclose(sched.alpha_bar, alpha_bar[OFFICIAL_TIMESTEPS], rtol=1e-12)
    # posterior at step 0 is x̂₀ itself: coefficient 1 on x̂₀, 0 on x_t
    assert sched.coef_x0[0] == pytest.approx(1.0) and sched.coef_xt[0] == pytest.approx(0.0)


def test_sampler_visits_official_steps_and_guidance() -> None:
    calls: list[tuple[list[int], torch.Tensor]] = []

    def model(x, t, lab):
        calls.append((t.tolist(), lab.clone()))
        return torch.cat([torch.zeros_like(x) + lab.sum(1, keepdim=True), torch.zeros_like(x)], dim=1)

    sched = diffusion.RespacedSchedule.from_base(diffusion.linear_betas(), diffusion.official_timesteps())
    seen: list[int] = []
    labels = torch.ones(1, 19, 8, 8) / 19
    diffusion.sample(model, torch.zeros(1, 3, 8, 8), labels, sched, guidance=1.5,
                     generator=torch.Generator().manual_seed(0), on_step=lambda i, t: seen.append(t))
    assert seen == OFFICIAL_TIMESTEPS[::-1]
    assert [c[0] for c in calls] == [[t, t] for t in OFFICIAL_TIMESTEPS[::-1]]  # cond and uncond in one batch
    assert torch.equal(calls[0][1][1], torch.zeros(19, 8, 8))  # unconditional branch: zeroed label map
    # guidance: ε = ε∅ + s(ε_c − ε∅) with ε_c = 1, ε∅ = 0 → 1.5
    out = diffusion.guided_output(model, torch.zeros(1, 3, 2, 2), torch.tensor([5]), torch.ones(1, 19, 2, 2) / 19, 1.5)
    assert torch.allclose(out[:, :3], torch.full((1, 3, 2, 2), 1.5)) and torch.equal(out[:, 3:], torch.zeros(1, 3, 2, 2))


def test_single_step_matches_hand_computation() -> None:
    """One ancestral step at the last respaced index, checked against the DDPM formulas."""
    base = diffusion.linear_betas()
    sched = diffusion.RespacedSchedule.from_base(base, OFFICIAL_TIMESTEPS)
    i = len(OFFICIAL_TIMESTEPS) - 1
    x = torch.full((1, 3, 1, 1), 0.3)
    eps, v = 0.2, 0.5
    out = torch.cat([torch.full_like(x, eps), torch.full_like(x, v)], dim=1)
    noise = torch.full_like(x, 0.7)
    got = diffusion.p_sample_step(sched, out, x, i, noise)
    ab = np.prod(1 - base[:193])  # ᾱ at t = 192
    ab_prev = np.prod(1 - base[:183])  # ᾱ at t = 182
    beta = 1 - ab / ab_prev
    x0 = np.clip(math.sqrt(1 / ab) * 0.3 - math.sqrt(1 / ab - 1) * eps, -1, 1)
    mean = beta * math.sqrt(ab_prev) / (1 - ab) * x0 + (1 - ab_prev) * math.sqrt(1 - beta) / (1 - ab) * 0.3
    post_var = beta * (1 - ab_prev) / (1 - ab)
    log_var = (v + 1) / 2 * math.log(beta) + (1 - (v + 1) / 2) * math.log(post_var)
    expected = mean + math.exp(0.5 * log_var) * 0.7
    assert torch.allclose(got, torch.full_like(x, expected), rtol=1e-5)


# --------------------------------------------------------------------------- adapter
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_checkpoint(tmp_path_factory.mktemp("spic") / "ema_0.9999_000001.pt", TINY_CONFIG, seed=0)


def _codec(ckpt: Path, **kw) -> SpicCodec:
    params = dict(TINY, checkpoint=str(ckpt), size="64x128", coarse_codec="webp", device="cpu")
    params.update(kw)
    return SpicCodec(**params)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    img = resize(data.astronaut()[:256, :], (h, w), anti_aliasing=True, preserve_range=True)
    return img.astype(np.uint8)


def test_adapter_bpp_parts_and_reproducibility(tiny_checkpoint: Path) -> None:
    codec = _codec(tiny_checkpoint)
    image, labels = _image(64, 128), cityscapes_like(1, 64, 128)
    sem = Semantics(labels, "cityscapes19", "ground-truth")
    enc = codec.encode(image, 35, semantics=sem)
    assert set(enc.parts) == {"labels", "coarse"}
    assert enc.notes["semantics_source"] == "ground-truth"
    # parts are exactly the label coder's bytes and the stand-in's file of the area-downsampled image
    assert enc.parts["labels"] == make_label_coder("runs").encode(labels)
    box = np.asarray(Image.fromarray(image).resize((32, 16), Image.BOX))
    assert np.abs(codec.downsample(image).astype(int) - box).max() <= 1
    webp = io.BytesIO()
    Image.fromarray(codec.downsample(image)).save(webp, "WEBP", quality=30, method=6)
    assert enc.parts["coarse"] == webp.getvalue()  # Q 35 → WebP quality 100 − 2·35
    from bench.codecs.base import bits_per_pixel

    assert bits_per_pixel(enc.total_bytes, 64, 128) == 8 * (len(enc.parts["labels"]) + len(enc.parts["coarse"])) / (64 * 128)

    labels_back, coarse = codec.decode_parts(enc.parts)
    assert np.array_equal(labels_back, labels) and coarse.shape == (16, 32, 3)
    steps: list[int] = []
    a = codec.reconstruct(labels_back, coarse, on_step=lambda i, t: steps.append(t))
    assert steps == OFFICIAL_TIMESTEPS[::-1]
    assert a.shape == (64, 128, 3) and a.dtype == np.uint8
    b = codec.decode(enc.parts)
    assert np.array_equal(a, b)  # same seed → identical
    c = _codec(tiny_checkpoint, seed=1).decode(enc.parts)
    assert not np.array_equal(a, c)  # different seed → different


def _official_coarse(image: np.ndarray, size: tuple[int, int], tmp: Path) -> np.ndarray:
    """frapez1/SPIC image_sample.py preprocess_input ("down+bpg"), step by step: the dataset's
    float32 [-1, 1] array, (x + 1) / 2, F.interpolate(mode="area"), ×255 in float32,
    cv2.imwrite of the BGR-swapped array to PNG, cv2.imread back (the file bpgenc reads)."""
    cv2 = pytest.importorskip("cv2")
    arr = np.transpose(image.astype(np.float32) / 127.5 - 1, [2, 0, 1])
    batch = torch.from_numpy(arr)[None]
    low = torch.nn.functional.interpolate(((batch + 1.0) / 2.0), size, mode="area")
    path = str(tmp / "compressed_bpg.png")
    cv2.imwrite(path, cv2.cvtColor(low[0].cpu().numpy().transpose(1, 2, 0) * 255, cv2.COLOR_BGR2RGB))
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


def test_coarse_image_is_the_official_float32_area_downsample_bit_for_bit(tiny_checkpoint: Path,
                                                                           tmp_path: Path) -> None:
    codec = _codec(tiny_checkpoint, size="256x512")
    image = _image(256, 512)
    official = _official_coarse(image, (64, 128), tmp_path)
    ours = codec.downsample(image)
    assert ours.shape == (64, 128, 3) and np.array_equal(ours, official)
    # the exact box mean (what the adapter did before) is not the official image
    box = np.rint(image.reshape(64, 4, 128, 4, 3).astype(np.float64).mean(axis=(1, 3))).astype(np.uint8)
    assert np.count_nonzero(box != official) > 0


def test_spic_paper_rate_sizes_the_bilinear_png_of_the_evaluation_script(tiny_checkpoint: Path,
                                                                        tmp_path: Path) -> None:
    import torchvision

    codec = _codec(tiny_checkpoint)
    image, labels = _image(64, 128), cityscapes_like(3, 64, 128)
    enc = codec.encode(image, 35, semantics=Semantics(labels, "cityscapes19", "ground-truth"))
    # image_sample.py: F.interpolate(image, small, mode="bilinear"), save_compressed((x + 1) / 2) →
    # torchvision save_image → PNG → the coarse codec (WebP stand-in here, quality 100 − 2·35)
    batch = torch.from_numpy(np.transpose(image.astype(np.float32) / 127.5 - 1, [2, 0, 1]))[None]
    low = torch.nn.functional.interpolate(batch, (16, 32), mode="bilinear")
    torchvision.utils.save_image((low[0] + 1.0) / 2.0, tmp_path / "c.png")
    webp = io.BytesIO()
    Image.open(tmp_path / "c.png").convert("RGB").save(webp, "WEBP", quality=30, method=6)
    coarse_bpp = 8 * len(webp.getvalue()) / (64 * 128)
    labels_bpp = 8 * len(enc.parts["labels"]) / (64 * 128)
    assert enc.notes["bpp_paper_coarse"] == pytest.approx(coarse_bpp)
    assert enc.notes["bpp_paper_labels"] == pytest.approx(labels_bpp)
    assert enc.notes["bpp_paper"] == pytest.approx(coarse_bpp + labels_bpp)
    assert len(webp.getvalue()) != len(enc.parts["coarse"])  # not the image the model receives


def test_adapter_input_checks(tiny_checkpoint: Path) -> None:
    codec = _codec(tiny_checkpoint)
    labels = cityscapes_like(2, 64, 128)
    with pytest.raises(CodecError, match="64x128"):
        codec.encode(_image(32, 64), 35, semantics=Semantics(labels[:32, :64], "cityscapes19", "ground-truth"))
    with pytest.raises(CodecError, match="class set"):
        codec.encode(_image(64, 128), 35, semantics=Semantics(labels, "coco182", "ground-truth"))
    with pytest.raises(CodecError, match="no label map"):
        codec.encode(_image(64, 128), 35)


def test_requirements_report_missing_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPIC_CHECKPOINT", raising=False)
    monkeypatch.setenv("BENCH_WEIGHTS_DIR", str(tmp_path))
    codec = SpicCodec(coarse_codec="webp")
    missing = [r for r in codec.missing() if r.kind == "weights"]
    assert missing and "SPIC_CHECKPOINT" in missing[0].detail and "frapez1/SPIC" in missing[0].detail
    with pytest.raises(WeightsError, match="not found"):
        codec.model()


def test_end_to_end_demo_with_stand_in(tiny_checkpoint: Path, store_path: Path) -> None:
    from bench.execution.runner import RunConfig, execute
    from bench.storage.store import Store

    # the demo protocol's 256×512; 3 of the official steps (t ≤ 20) keep the test short on a CPU
    params = dict(TINY, checkpoint=str(tiny_checkpoint), coarse_codec="webp", device="cpu", max_iter_time=20)
    config = RunConfig(dataset="demo", codecs=["spic"], metrics=["psnr"], rates={"spic": ["35"]}, limit=1,
                       codec_params={"spic": params})
    store = Store(store_path)
    run_id = execute(config, store, progress=False)
    rows = list(store.rows(run_id))
    assert len(rows) == 1
    row = rows[0]
    assert row.status == "ok", row.error
    assert (row.height, row.width) == (256, 512)
    assert row.bpp == pytest.approx(8 * (row.bytes["labels"] + row.bytes["coarse"]) / (256 * 512))
    assert row.metrics["bpp_labels"] == pytest.approx(8 * row.bytes["labels"] / (256 * 512))
    assert math.isfinite(row.metrics["psnr"])
    # SPIC rows carry the evaluation script's rate beside the real one
    assert row.metrics["bpp_paper"] == pytest.approx(row.metrics["bpp_paper_coarse"] + row.metrics["bpp_paper_labels"])
    assert row.metrics["bpp_paper_labels"] == pytest.approx(row.metrics["bpp_labels"])
    assert row.metrics["bpp_paper"] != pytest.approx(row.bpp)
    meta = store.run(run_id)["meta"]
    assert meta["codecs"]["spic"]["params"]["timesteps"] == [0, 10, 20]
    assert "BPG stand-in: webp" in meta["codecs"]["spic"]["version"]
    assert meta["codecs"]["spic"]["label"] == "SPIC (BPG stand-in: webp)"


def test_bpg_is_a_requirement_unless_a_stand_in_is_chosen() -> None:
    import shutil

    bpg = SpicCodec(coarse_codec="bpg")
    assert bpg.display_name == "SPIC" + " (BPG)" and "BPG stand-in" not in bpg.version
    assert bpg.coarse.params()["chroma"] == "420" and bpg.coarse_rate(35) == 35
    if shutil.which("bpgenc") is None:
        assert any(r.kind == "binary" and r.name == "bpgenc" for r in bpg.missing())
    heic = SpicCodec(coarse_codec="jpeg2000")
    assert heic.stand_in and heic.coarse_rate(35) == pytest.approx(0.86)
    assert heic.describe()["params"]["coarse_codec"]["q_mapping"].startswith("bpp")
