"""SPADE-GAN codec: exact latent bitstream, training steps, checkpoint format and errors,
adapter round trip and an end-to-end run through the runner (tiny random-init networks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.codecs.base import Semantics
from bench.codecs.spadegan import bitstream, checkpoint
from bench.codecs.spadegan.adapter import SpadeGANCodec
from bench.codecs.spadegan.model import MultiScaleDiscriminator, SpadeGANConfig, one_hot, single_thread
from bench.codecs.spadegan.train import bpp_of, gan_step, rd_step
from bench.codecs.spadegan.train import main as train_main
from bench.errors import UnavailableError, WeightsError
from bench.execution.runner import RunConfig, execute
from bench.storage.store import Store

TINY = dict(width=8, latent_channels=8, semantic_width=4, label_hidden=8)


def tiny(class_set: str = "cityscapes19", num_classes: int = 19, seed: int = 0):
    torch.manual_seed(seed)
    return checkpoint.build(SpadeGANConfig(class_set=class_set, num_classes=num_classes, **TINY))


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)], -1) * 100 + 128
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture()
def tiny_ckpt(tmp_path: Path) -> Path:
    model, labels = tiny()
    return checkpoint.save(tmp_path / "tiny.pt", model, labels, {"stage": "init"})


def test_latent_bitstream_decodes_to_the_models_own_rounding():
    model, _ = tiny()
    model.update(force=True)
    x = torch.from_numpy(smooth_image(128, 192).transpose(2, 0, 1).copy()).float()[None] / 255
    y_bytes, z_bytes, abs_max, y_hat = bitstream.compress_latents(model, x)
    with torch.no_grad():
        y = model.g_a(x)
        z_ref, _ = model.entropy_bottleneck(model.h_a(y), training=False)
    assert torch.equal(y_hat, torch.round(y))
    assert abs_max == int(torch.round(y).abs().max()) + 1
    decoded = bitstream.decompress_latents(model, y_bytes, z_bytes, abs_max, (8, 12))
    assert torch.equal(decoded, torch.round(y))
    z_dec = model.entropy_bottleneck.decompress([z_bytes], (2, 3))
    assert torch.equal(z_dec, z_ref)
    # the real code length follows the model's likelihood of ŷ (GMM, eval mode)
    model.eval()
    with torch.no_grad():
        out = model(x, one_hot(torch.zeros(1, 8, 12, dtype=torch.long), 20))
    ideal_y = float(-torch.log2(out["likelihoods"]["y"]).sum())
    assert torch.equal(out["y_hat"], torch.round(y))
    assert ideal_y <= 8 * len(y_bytes) <= 1.1 * ideal_y + 64


def test_rate_distortion_steps_lower_the_loss():
    model, _ = tiny()
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if not n.endswith("quantiles")], lr=1e-3)
    aux_opt = torch.optim.Adam(aux, lr=1e-3)
    x = torch.from_numpy(np.stack([smooth_image(64, 64, s) for s in range(2)]).transpose(0, 3, 1, 2).copy()) / 255.0
    sem = one_hot(torch.randint(0, 20, (2, 4, 4)), 20)
    with single_thread():  # tiny ops: one thread is much faster on a busy machine
        losses = [rd_step(model, opt, aux_opt, x, sem, 0.4)["loss"] for _ in range(12)]
    assert np.mean(losses[-3:]) < 0.8 * losses[0]
    # bpp_of is Σ −log2 p / pixels
    lik = {"a": torch.full((1, 1, 2, 2), 0.5)}
    assert float(bpp_of(lik, 4)) == pytest.approx(1.0)


def test_gan_step_trains_only_the_decoder():
    model, _ = tiny()
    disc = MultiScaleDiscriminator(20, width=8)
    g_opt = torch.optim.Adam(model.g_s.parameters(), lr=1e-3)
    d_opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith("g_s.")}
    dec0 = {n: p.detach().clone() for n, p in model.g_s.named_parameters()}
    d0 = {n: p.detach().clone() for n, p in disc.named_parameters()}
    x = torch.rand(2, 3, 64, 64)
    full = torch.randint(0, 20, (2, 64, 64))
    stats = gan_step(model, disc, g_opt, d_opt, x, one_hot(full[:, 8::16, 8::16], 20), one_hot(full, 20))
    assert all(np.isfinite(v) for v in stats.values())
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not n.startswith("g_s."))
    assert any(not torch.equal(p, dec0[n]) for n, p in model.g_s.named_parameters())
    assert any(not torch.equal(p, d0[n]) for n, p in disc.named_parameters())
    assert len(disc(x, one_hot(full, 20))) == 3


def test_checkpoint_reloads_to_identical_outputs(tmp_path, tiny_ckpt):
    image = smooth_image(70, 90)
    labels = np.random.default_rng(1).integers(0, 19, (70, 90)).astype(np.uint8)
    labels[:5] = 255
    sem = Semantics(labels, "cityscapes19", "ground-truth")
    # a codec built on the same networks before saving vs one loading the file
    model, lab_model, info = checkpoint.load(tiny_ckpt)
    assert info == {"stage": "init"} and model.config.num_classes == 19
    resaved = checkpoint.save(tmp_path / "again.pt", model, lab_model)
    a = SpadeGANCodec(checkpoints={"t": str(tiny_ckpt)})
    b = SpadeGANCodec(checkpoints={"t": str(resaved)})
    ea, eb = a.encode(image, "t", semantics=sem), b.encode(image, "t", semantics=sem)
    assert ea.parts == eb.parts
    assert set(ea.parts) == {"header", "z", "y", "labels"} and len(ea.parts["header"]) == 7
    ra, rb = a.decode(ea.parts), b.decode(eb.parts)
    assert ra.shape == image.shape and ra.dtype == np.uint8
    assert np.array_equal(ra, rb)
    # decoding runs the decoder on the bitstream's ŷ and label map: same as the model's own pass
    x = torch.from_numpy(np.pad(image, ((0, 58), (0, 38), (0, 0)), mode="edge").transpose(2, 0, 1).copy())
    x = x.float()[None] / 255
    from bench.codecs.spadegan import labelmap as lm

    small = lm.downscale(lm.pad_to_multiple(labels, 64))
    with torch.no_grad():
        ref = model.g_s(torch.round(model.g_a(x)), one_hot(torch.as_tensor(lm.to_symbols(small, 19))[None], 20))
    ref = (ref.clamp(0, 1)[0, :, :70, :90].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(ra, ref)


def test_wrong_or_missing_checkpoint_gives_a_clear_error(tmp_path, tiny_ckpt):
    obj = torch.load(tiny_ckpt, weights_only=True)
    broken = dict(obj, model={k: v for k, v in obj["model"].items() if not k.startswith("g_s.res2.")})
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(WeightsError, match="missing: g_s.res2"):
        checkpoint.load(tmp_path / "broken.pt")
    other = dict(obj, config=dict(obj["config"], width=16))
    torch.save(other, tmp_path / "wider.pt")
    with pytest.raises(WeightsError, match="do not fit|keys do not match"):
        checkpoint.load(tmp_path / "wider.pt")
    torch.save(dict(obj, format_version=99), tmp_path / "future.pt")
    with pytest.raises(WeightsError, match="format version 99"):
        checkpoint.load(tmp_path / "future.pt")
    torch.save(obj["model"], tmp_path / "plain.pt")
    with pytest.raises(WeightsError, match="not a spadegan checkpoint"):
        checkpoint.load(tmp_path / "plain.pt")
    codec = SpadeGANCodec(checkpoint_dir=str(tmp_path / "nowhere"))
    reqs = codec.requirements()
    assert [r.name for r in reqs] == ["spadegan:lambda0.4", "spadegan:lambda0.75", "spadegan:lambda1.5"]
    assert not any(r.found for r in reqs) and all("bench train spadegan" in r.detail for r in reqs)
    with pytest.raises(UnavailableError, match="not found"):
        codec.encode(smooth_image(64, 64), "lambda0.4",
                     semantics=Semantics(np.zeros((64, 64), np.uint8), "coco_merged9", "gt"))


def test_checkpoint_dir_tags_are_sorted_by_lambda(tmp_path, tiny_ckpt):
    for tag in ("lambda5.0", "lambda0.75", "lambda1.5"):
        (tmp_path / "dir").mkdir(exist_ok=True)
        (tmp_path / "dir" / f"{tag}.pt").write_bytes(tiny_ckpt.read_bytes())
    codec = SpadeGANCodec(checkpoint_dir=str(tmp_path / "dir"))
    assert codec.rate_knob.values == ("lambda0.75", "lambda1.5", "lambda5.0")
    assert all(r.found for r in codec.requirements())
    enc = codec.encode(smooth_image(64, 64), "lambda5.0",
                       semantics=Semantics(np.zeros((64, 64), np.uint8), "cityscapes19", "gt"))
    assert bitstream.Header.unpack(enc.parts["header"]).model_index == 2


def test_runner_end_to_end_on_demo(tiny_ckpt, store_path):
    config = RunConfig(dataset="demo", codecs=["spadegan"], metrics=["psnr"], limit=1,
                       codec_params={"spadegan": {"checkpoints": {"tiny": str(tiny_ckpt)}}})
    with Store(store_path) as store:
        run_id = execute(config, store, progress=False)
        rows = list(store.rows(run_id))
    assert len(rows) == 1
    row = rows[0]
    assert row.status == "ok", row.error
    assert set(row.bytes) == {"header", "z", "y", "labels"}
    assert row.bpp == pytest.approx(8 * sum(row.bytes.values()) / (256 * 512))
    assert row.metrics["bpp_labels"] == pytest.approx(8 * row.bytes["labels"] / (256 * 512))
    assert 0 < row.metrics["psnr"] < 40


def test_train_entry_point_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "trained.pt"
    rc = train_main(["--dataset", "demo", "--limit", "1", "--out", str(out), "--class-set", "cityscapes34",
                     "--width", "8", "--latent-channels", "8", "--semantic-width", "4", "--label-hidden", "8",
                     "--disc-width", "8", "--steps-rd", "2", "--steps-gan", "1", "--steps-labels", "2",
                     "--batch-size", "1", "--crop", "64", "--lambda-mse", "0.75"])
    assert rc == 0
    model, _, info = checkpoint.load(out)
    assert model.config.class_set == "cityscapes34" and model.config.lambda_mse == 0.75
    assert (info["stage"], info["steps_rd"], info["steps_gan"], info["steps_labels"]) == ("gan", 2, 1, 2)
    codec = SpadeGANCodec(checkpoints={"lambda0.75": str(out)})  # trainId labels → converted to labelIds
    enc = codec.encode(smooth_image(64, 128), "lambda0.75",
                       semantics=Semantics(np.zeros((64, 128), np.uint8), "cityscapes19", "gt"))
    assert codec.decode(enc.parts).shape == (64, 128, 3)
