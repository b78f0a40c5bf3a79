"""SQ-GAN adapter: bitstream round trip, official bound, checkpoint layouts, errors, runner.

Models are tiny random-init networks (no trained weights here). The key layout is
checked against the names and shapes of the official code (MeriemBouy/SQ-GAN @ 0e5cdd7,
config/sqgan_cityscapes.yml), written out by hand below.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from bench.codecs.base import Semantics
from bench.codecs.sqgan import bitstream
from bench.codecs.sqgan.adapter import SQGANCodec
from bench.codecs.sqgan.checkpoint import load_official, save_official_layout
from bench.codecs.sqgan.config import make_config
from bench.codecs.sqgan.model import (
    SQGAN,
    BranchTokens,
    labels_to_onehot,
    normalise_image,
    to_uint8,
)
from bench.errors import CodecError, ConfigError, WeightsError

# (10·int(512·m) + 512)/(256·512), the authors' sample.py formula, by hand:
OFFICIAL_BOUND = {0.4: (10 * 204 + 512) / 131072, 0.6: (10 * 307 + 512) / 131072,
                  0.7: (10 * 358 + 512) / 131072, 1.0: (10 * 512 + 512) / 131072}


def _spread_codebooks(model: SQGAN, seed: int = 0) -> SQGAN:
    """Random init leaves the codebooks ~0 (one code wins); give them the features' scale."""
    g = torch.Generator().manual_seed(seed)
    for q in (model.quantize, model.quantize_semantic):
        w = q.codebook.weight
        w.data.copy_(torch.randn(w.shape, generator=g) * 0.05)
    return model


@pytest.fixture(scope="module")
def micro_model() -> SQGAN:
    torch.manual_seed(0)
    return _spread_codebooks(SQGAN(make_config("micro")))


@pytest.fixture(scope="module")
def micro_ckpt(micro_model, tmp_path_factory):
    return save_official_layout(micro_model, tmp_path_factory.mktemp("ckpt") / "sqgan_micro.ckpt")


def _sample(h: int = 64, w: int = 128, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([(xx * 255 // w), (yy * 255 // h), rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
    labels = np.where(yy < h // 3, 10, np.where(xx < w // 2, 0, 13)).astype(np.uint8)  # sky, road, car
    labels[h // 2:h // 2 + 6, :10] = 255  # void
    return image, labels


def _gt(labels: np.ndarray) -> Semantics:
    return Semantics(labels=labels, class_set="cityscapes19", source="ground-truth")


# ----------------------------------------------------------------------------- rate and bound
def test_official_bound_values_exact():
    for m, expected in OFFICIAL_BOUND.items():
        assert bitstream.bound_bpp(int(512 * m)) == expected
    assert [round(OFFICIAL_BOUND[m], 6) for m in (0.4, 0.6, 0.7, 1.0)] == [0.019470, 0.027328, 0.031219, 0.042969]


def test_rate_knob_parse_and_labels():
    codec = SQGANCodec(checkpoint="/nonexistent")
    assert codec.rate_knob.parse("0.4:0.6") == (0.4, 0.6)
    assert codec.rate_knob.parse("0.5") == (0.5, 0.5)
    assert codec.rate_label("0.70:1") == "0.7:1" and codec.rate_label((0.4, 0.6)) == "0.4:0.6"
    assert len(codec.rate_knob.values) == 9
    for bad in ("0:0.5", "1.2:0.5", "a:b", "0.1:0.2:0.3"):
        with pytest.raises(ConfigError):
            codec.rate_knob.parse(bad)


# ----------------------------------------------------------------------------- key layout
def test_state_dict_layout_matches_official_names_and_shapes():
    with torch.device("meta"):
        model = SQGAN(make_config("official"))
    sd = model.state_dict()
    assert len(sd) == 1176  # the official modules' count for config/sqgan_cityscapes.yml
    expected = {
        "quantize.codebook.weight": (1025, 256),
        "quantize.codebook.embed_ema": (1024, 256),
        "quantize.codebook.cluster_size_ema": (1024,),
        "quantize_semantic.codebook.weight": (1025, 256),
        "encoder.conv_in.0.weight": (128, 3, 3, 3),
        "encoder.conv_in.1.weight": (128,),
        "encoder.conv_in_semantic.0.weight": (128, 19, 3, 3),
        "encoder.conv_in_semantic.2.weight": (1, 128, 1, 1),
        "encoder_semantic.conv_in.0.weight": (128, 20, 3, 3),
        "encoder.down.4.attn.1.proj_out.weight": (512, 512, 1, 1),
        "encoder.down.2.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "encoder.down.3.downsample.conv.weight": (256, 256, 3, 3),
        "encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "encoder.conv_out.weight": (256, 512, 3, 3),
        "decoder.conv_in.weight": (512, 256, 3, 3),
        "decoder.up.4.block.2.norm1.mlp_shared.0.weight": (128, 19, 3, 3),
        "decoder.up.4.attn.2.k.weight": (512, 512, 1, 1),
        "decoder.up.0.block.0.norm2.mlp_gamma.weight": (128, 128, 3, 3),
        "decoder.up.1.upsample.conv.weight": (128, 128, 3, 3),
        "decoder.conv_out.weight": (3, 128, 3, 3),
        "decoder_semantic.mid.block_2.conv2.weight": (512, 512, 3, 3),
        "decoder_semantic.conv_out.weight": (20, 128, 3, 3),
        "masker.cross_attention.in_proj_weight": (768, 256),
        "masker.cross_attention.out_proj.weight": (256, 256),
        "masker.score_pred_net.layer1.mlp_beta.weight": (256, 128, 3, 3),
        "masker.score_pred_net.conv2.weight": (1, 256, 1, 1),
        "masker.pre_projection.weight": (256, 256),
        "demasker.mask_token": (1, 256, 1),
        "demasker.post_projection.weight": (256, 256, 1, 1),
        "demasker.conv_in.weight": (256, 256, 3, 3),
        "demasker.transformer.blocks.7.resblock.temb_proj.weight": (256, 512),
        "demasker.transformer.blocks.7.attn.v.weight": (256, 256, 1, 1),
        "demasker.transformer.last_resblock.conv2.weight": (256, 256, 3, 3),
        "demasker_semantic.transformer.blocks.0.resblock.norm1.weight": (256,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any("mid" in k for k in sd if k.startswith("decoder.")), "the SPADE decoder has no middle block"
    assert not any(k.startswith(("decoder.up.0.attn", "encoder.down.3.attn")) for k in sd)  # attention only at 16
    prefixes = {k.split(".")[0] for k in sd}
    assert prefixes == {"encoder", "decoder", "masker", "demasker", "quantize", "encoder_semantic",
                        "decoder_semantic", "masker_semantic", "demasker_semantic", "quantize_semantic"}


def test_onehot_maps_void_to_channel_19():
    lab = np.array([[0, 18], [255, 7]], dtype=np.uint8)
    oh = labels_to_onehot(lab)
    assert oh.shape == (1, 20, 2, 2) and oh.sum(1).eq(1).all()
    assert oh[0, 19, 1, 0] == 1 and oh[0, 18, 0, 1] == 1 and oh[0, 7, 1, 1] == 1
    with pytest.raises(ValueError):
        labels_to_onehot(np.array([[19]]))


# ----------------------------------------------------------------------------- round trip
@pytest.fixture(scope="module")
def micro_codec(micro_ckpt) -> SQGANCodec:
    return SQGANCodec(checkpoint=str(micro_ckpt), model="micro", device="cpu")


@pytest.mark.parametrize("rate", [(0.4, 0.6), (1.0, 1.0), (0.05, 0.3)])
def test_decode_of_bytes_equals_quantised_forward(micro_model, micro_codec, rate):
    codec = micro_codec
    image, labels = _sample()
    enc = codec.encode(image, f"{rate[0]}:{rate[1]}", semantics=_gt(labels))
    assert set(enc.parts) == {"header", "semantic", "image"}
    decoded = codec.decode(enc.parts)
    ref_img, _ = micro_model(normalise_image(image), labels_to_onehot(labels), *rate)
    assert decoded.dtype == np.uint8 and decoded.shape == image.shape
    assert np.array_equal(decoded, to_uint8(ref_img))  # bit-exact on CPU
    tokens = micro_model.encode_tokens(normalise_image(image), labels_to_onehot(labels), *rate)
    got, h, w = bitstream.unpack(enc.parts, 512, 1024, 32)
    assert (h, w) == (64, 128)
    for a, b in ((got.image, tokens.image), (got.semantic, tokens.semantic)):
        assert np.array_equal(a.positions, b.positions) and np.array_equal(a.indices, b.indices)
    assert len(tokens.image.positions) == int(512 * rate[0]) and len(tokens.semantic.positions) == int(512 * rate[1])
    # real size never exceeds the (byte-rounded) official bound by more than the headers
    bound = sum(math.ceil(bitstream.bound_bits(int(512 * m)) / 8) for m in rate)
    assert enc.total_bytes <= bound + bitstream.MAX_OVERHEAD_BYTES
    assert enc.notes["bpp_paper"] == pytest.approx(enc.notes["bpp_paper_image"] + enc.notes["bpp_paper_semantic"])
    assert enc.notes["bpp_paper_image"] == bitstream.bound_bpp(int(512 * rate[0]), 64, 128)
    assert enc.notes["semantics_ground_truth"] == 1.0


def _structured(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    grid = np.zeros((16, 32), dtype=bool)
    grid[:, : (32 * k) // 512] = True
    pos = np.flatnonzero(grid)
    extra = k - len(pos)
    if extra:
        pos = np.sort(np.concatenate([pos, rng.choice(np.flatnonzero(~grid.ravel()), extra, replace=False)]))
    return pos, rng.choice([3, 40, 41, 900], size=k, p=[0.7, 0.1, 0.1, 0.1])


@pytest.mark.parametrize("k", [0, 1, 2, 204, 307, 358, 511, 512])
def test_branch_coding_roundtrip_and_bound(k):
    rng = np.random.default_rng(k)
    bound = math.ceil(bitstream.bound_bits(k) / 8)
    rand = (np.sort(rng.choice(512, k, replace=False)), rng.integers(0, 1024, k))
    for pos, idx in (rand, _structured(k, rng)):
        data = bitstream.encode_branch(BranchTokens(pos, idx), 512, 1024, 32)
        back = bitstream.decode_branch(data, 512, 1024, 32)
        assert np.array_equal(back.positions, pos) and np.array_equal(back.indices, idx)
        assert len(data) <= bound + bitstream.BRANCH_HEADER_BYTES
    if k >= 204:  # entropy coding wins clearly on structured maps
        data = bitstream.encode_branch(BranchTokens(*_structured(k, rng)), 512, 1024, 32)
        assert len(data) < 0.5 * bound


def test_corrupt_streams_raise_codec_errors():
    data = bitstream.encode_branch(BranchTokens(np.arange(10), np.arange(10)), 512, 1024, 32)
    with pytest.raises(CodecError):
        bitstream.decode_branch(data[:2], 512, 1024, 32)
    with pytest.raises(CodecError):
        bitstream.decode_branch(b"\xff\xff\x00" + data[3:], 512, 1024, 32)
    with pytest.raises(CodecError):
        bitstream.unpack({"header": b"\x09\x00\x40\x00\x80", "image": data, "semantic": data}, 512, 1024, 32)


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("form", ["lightning", "parts"])
def test_checkpoint_forms_reproduce_outputs(micro_model, tmp_path, form):
    path = save_official_layout(micro_model, tmp_path / ("m.ckpt" if form == "lightning" else "parts"), form=form)
    fresh = SQGAN(make_config("micro"))
    report = load_official(fresh, path)
    assert report.form == form and len(report.sha256) == 64
    if form == "lightning":
        assert sorted(report.ignored) == ["loss.discriminator.main.0.weight", "loss.perceptual_loss.net.slice1.0.weight"]
    image, labels = _sample(seed=3)
    args = (normalise_image(image), labels_to_onehot(labels), 0.7, 0.4)
    assert torch.equal(fresh(*args)[0], micro_model(*args)[0])


def test_wrong_checkpoints_list_keys(micro_model, tmp_path):
    sd = dict(micro_model.state_dict())
    del sd["demasker.mask_token"]
    sd["masker.extra_layer.weight"] = torch.zeros(1)
    torch.save({"state_dict": sd}, tmp_path / "bad.ckpt")
    with pytest.raises(WeightsError) as err:
        load_official(SQGAN(make_config("micro")), tmp_path / "bad.ckpt")
    assert "demasker.mask_token" in str(err.value) and "masker.extra_layer.weight" in str(err.value)
    # the right keys for another width: shapes are reported
    with pytest.raises(WeightsError, match="other shapes"):
        load_official(SQGAN(make_config("micro", codebook_size=512)), save_official_layout(micro_model, tmp_path / "m.ckpt"))
    # parts folder with a module missing
    parts = save_official_layout(micro_model, tmp_path / "parts", form="parts")
    (parts / "quantize.ckpt").unlink()
    with pytest.raises(WeightsError, match="quantize"):
        load_official(SQGAN(make_config("micro")), parts)
    with pytest.raises(WeightsError, match="does not exist"):
        load_official(SQGAN(make_config("micro")), tmp_path / "nothing.ckpt")
    (tmp_path / "notes.ckpt").write_text("hi\n")  # not a torch file at all (pickle reads 'h', 'i' as opcodes)
    with pytest.raises(WeightsError, match="cannot read"):
        load_official(SQGAN(make_config("micro")), tmp_path / "notes.ckpt")


class _Hyper:  # stands for the OmegaConf objects a Lightning file may pickle
    def __init__(self) -> None:
        self.lr = 1e-4


def test_pickled_objects_refused_unless_trusted(micro_model, tmp_path):
    path = tmp_path / "objects.ckpt"
    torch.save({"state_dict": micro_model.state_dict(), "hyper_parameters": _Hyper()}, path, pickle_module=pickle)
    with pytest.raises(WeightsError, match="weights_only"):
        load_official(SQGAN(make_config("micro")), path)
    assert load_official(SQGAN(make_config("micro")), path, trust_pickle=True).form == "lightning"


# ----------------------------------------------------------------------------- adapter
def test_missing_weights_and_bad_inputs(micro_ckpt, monkeypatch):
    monkeypatch.delenv("SQGAN_CHECKPOINT", raising=False)
    codec = SQGANCodec(checkpoint="/nonexistent/sqgan.ckpt")
    (req,) = codec.missing()
    assert req.kind == "weights" and "SQGAN_CHECKPOINT" in req.detail and "authors" in req.detail
    monkeypatch.setenv("SQGAN_CHECKPOINT", str(micro_ckpt))
    codec = SQGANCodec(model="micro", device="cpu")
    assert codec.missing() == [] and len(codec.describe()["params"]["checkpoint_sha256"]) == 64
    image, labels = _sample()
    with pytest.raises(CodecError, match="64x128"):
        codec.encode(image[:32], "0.4:0.4", semantics=_gt(labels[:32]))
    with pytest.raises(CodecError, match="label map"):
        codec.encode(image, "0.4:0.4")
    with pytest.raises(CodecError, match="cityscapes19"):
        codec.encode(image, "0.4:0.4", semantics=Semantics(labels, "cocostuff171", "ground-truth"))
    resized = SQGANCodec(model="micro", device="cpu", resize=True)
    small, small_lab = _sample(48, 80)
    enc = resized.encode(small, "0.4:0.4", semantics=Semantics(small_lab, "cityscapes19", "segmenter:x"))
    assert resized.decode(enc.parts).shape == small.shape
    assert enc.notes["resized"] == 1.0 and enc.notes["semantics_ground_truth"] == 0.0


def test_runner_end_to_end_on_demo(tmp_path, store_path):
    """bench run --dataset demo --codecs sqgan with a tiny random-init 256×512 model."""
    from bench.execution.runner import RunConfig, execute
    from bench.storage.store import Store

    torch.manual_seed(1)
    ckpt = save_official_layout(_spread_codebooks(SQGAN(make_config("tiny"))), tmp_path / "tiny.ckpt")
    config = RunConfig(dataset="demo", codecs=["sqgan"], metrics=["psnr"], limit=1, rates={"sqgan": ["0.4:0.6"]},
                       codec_params={"sqgan": {"checkpoint": str(ckpt), "model": "tiny", "device": "cpu"}})
    with Store(store_path) as store:
        run_id = execute(config, store, progress=False)
        (row,) = list(store.rows(run_id))
    assert row.status == "ok", row.error
    assert row.rate == "0.4:0.6" and set(row.bytes) == {"header", "semantic", "image"}
    assert row.metrics["bpp_paper_image"] == OFFICIAL_BOUND[0.4]
    assert row.metrics["bpp_paper_semantic"] == OFFICIAL_BOUND[0.6]
    assert row.bpp == 8 * sum(row.bytes.values()) / (256 * 512)
    assert row.bpp <= OFFICIAL_BOUND[0.4] + OFFICIAL_BOUND[0.6] + 8 * (bitstream.MAX_OVERHEAD_BYTES + 2) / (256 * 512)
    assert np.isfinite(row.metrics["psnr"])
