"""CompressAI zoo codecs: real bitstreams, local weights under CompressAI's names, errors.

Networks have random initial weights (after ``update(force=True)``); the references are
CompressAI's own ``compress`` / ``decompress`` on a hand-padded input.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("compressai.ans")
from compressai.zoo import image as zoo  # noqa: E402

from bench.cli import main  # noqa: E402
from bench.codecs import compressai_bitstream as bitstream  # noqa: E402
from bench.codecs.compressai_zoo import ARCHITECTURES  # noqa: E402
from bench.datasets.base import Sample  # noqa: E402
from bench.errors import CodecError, ConfigError, UnavailableError, WeightsError  # noqa: E402
from bench.execution import runner  # noqa: E402
from bench.execution.pipeline import Coded, base_row  # noqa: E402
from bench.registry import catalog
from bench.runtime import weights as W  # noqa: E402

H, W_ = 37, 53  # odd sizes: padded to 64×64 (left 5, right 6, top 13, bottom 14)
PAD = (5, 6, 13, 14)


@pytest.fixture()
def no_weights(tmp_path, monkeypatch):
    """No weights anywhere: a fresh torch hub cache and no $BENCH_WEIGHTS_DIR."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("BENCH_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "refcache"))
    return tmp_path


def _image(h: int = H, w: int = W_) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), (xx + yy) % 256], -1)
    return np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


def _net(arch: str, quality: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    net = zoo.model_architectures[arch](*zoo.cfgs[arch][quality]).eval()
    net.update(force=True)
    return net


def _save(state_dict: dict, folder: Path, stem: str, *, training_format: bool = True) -> Path:
    """Write ``state_dict`` as CompressAI's training script does and name the file
    ``<stem>-<sha256[:8]>.pth.tar`` (its zoo naming)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "tmp.pth.tar"
    obj = {"epoch": 3, "state_dict": state_dict, "loss": torch.tensor(0.5),
           "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0, 1]}]}}
    torch.save(obj if training_format else state_dict, tmp)
    final = folder / f"{stem}-{W.sha256_file(tmp)[:8]}.pth.tar"
    tmp.rename(final)
    return final


def _reference(net, image: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """CompressAI's own compress/decompress of the zero-padded image, cropped back."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = net.compress(F.pad(x, PAD, mode="constant", value=0))
        x_hat = net.decompress(out["strings"], out["shape"])["x_hat"]
    x_hat = x_hat[:, :, PAD[2]:PAD[2] + H, PAD[0]:PAD[0] + W_]
    rec = (x_hat[0] * 255).clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    return [s[0] for s in out["strings"]], rec


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_round_trip_is_compressais_own_bitstream_and_output(arch, no_weights):
    net = _net(arch)
    path = _save(net.state_dict(), no_weights / "ckpt", f"{arch}-own")
    codec = catalog.make_codec(arch, checkpoint={1: str(path)}, device="cpu")
    image = _image()
    strings, expected = _reference(net, image)

    encoded = codec.encode(image, 1)
    names = ["y", "z"][: len(strings)]
    assert sorted(encoded.parts) == sorted(["header", *names])
    for name, string in zip(names, strings):
        assert encoded.parts[name] == string  # the bytes are the real strings
    assert len(encoded.parts["header"]) == 10
    np.testing.assert_array_equal(codec.decode(encoded.parts), expected)
    # the rows' bpp per part comes from these byte counts (bench run: see the CLI test)
    row = base_row(codec, 1, Sample("x", image), Coded(bytes={n: len(p) for n, p in encoded.parts.items()},
                                                       notes=encoded.notes))
    for name, string in zip(names, strings):
        assert row.metrics[f"bpp_{name}"] == pytest.approx(8 * len(string) / (H * W_))
    assert row.bpp == pytest.approx(8 * (10 + sum(len(s) for s in strings)) / (H * W_))
    assert row.metrics["bpp_compressai"] == pytest.approx(8 * sum(len(s) for s in strings) / (H * W_))


def test_header_layout_is_hand_computable():
    parts = bitstream.pack(bitstream.Header(3, 61, 97, (1, 2), on_cuda=True), [[b"yy"], [b"z"]])
    assert parts == {"header": bytes([0x81, 3, 0, 61, 0, 97, 0, 1, 0, 2]), "y": b"yy", "z": b"z"}
    header, strings = bitstream.unpack(parts, 2)
    assert header == bitstream.Header(3, 61, 97, (1, 2), True) and strings == [[b"yy"], [b"z"]]
    with pytest.raises(CodecError):
        bitstream.unpack({"header": parts["header"], "y": b"yy"}, 2)  # z is missing


def test_decoding_on_another_device_type_is_refused(no_weights, monkeypatch):
    path = _save(_net("bmshj2018-hyperprior").state_dict(), no_weights / "ckpt", "own")
    codec = catalog.make_codec("bmshj2018-hyperprior", checkpoint={1: str(path)}, device="cpu")
    net, seen = codec.model(1), []
    compress = net.compress
    monkeypatch.setattr(net, "compress", lambda x: seen.append(torch.backends.cudnn.deterministic) or compress(x))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    parts = dict(codec.encode(_image(), 1).parts)
    assert seen == [True] and not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark
    parts["header"] = bytes([parts["header"][0] | 0x80]) + parts["header"][1:]  # "encoded on CUDA"
    with pytest.raises(CodecError, match="encoded on cuda"):
        codec.decode(parts)


def test_zoo_named_file_loads_from_weights_dir_and_hub_cache(no_weights, monkeypatch):
    arch = "bmshj2018-factorized"
    net = _net(arch)
    official = W.hash_in_name(zoo.model_urls[arch]["mse"][1])
    assert official == "446d5c7f"
    wdir = no_weights / "weights"
    path = _save(net.state_dict(), wdir, "bmshj2018-factorized-prior-1", training_format=False)
    codec = catalog.make_codec(arch, weights_dir=str(wdir), device="cpu")
    assert codec.weights_path(1) == path and codec.weights_path(2) is None
    req = codec.requirements()[0]
    assert req.found and f"q1={path}" in req.detail and "bmshj2018-factorized-prior-2-87279a02.pth.tar" in req.detail
    files = codec.describe()["params"]["files"]
    assert files == {"1": {"file": path.name, "sha256": W.sha256_file(path), "official": False}}
    _strings, expected = _reference(net, _image())
    parts = codec.encode(_image(), 1).parts
    np.testing.assert_array_equal(codec.decode(parts), expected)
    shipped = pickle.loads(pickle.dumps(codec))  # as to a worker: without the loaded network
    assert shipped._models == {} and 1 in codec._models
    np.testing.assert_array_equal(shipped.decode(parts), expected)
    # the same file in the torch hub cache, where CompressAI downloads to, is found too
    hub = no_weights / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    path.rename(hub / path.name)
    assert catalog.make_codec(arch, device="cpu").weights_path(1) == hub / path.name
    # the ms-ssim card looks for the ms-ssim files only
    assert catalog.make_codec(arch + "-msssim").weights_path(1) is None


def test_wrong_hash_prefix_is_a_weights_error(no_weights):
    wdir = no_weights / "weights"
    wdir.mkdir()
    name = zoo.model_urls["bmshj2018-factorized"]["mse"][1].rsplit("/", 1)[1]
    torch.save(_net("bmshj2018-factorized").state_dict(), wdir / name)  # content ≠ 446d5c7f…
    codec = catalog.make_codec("bmshj2018-factorized", weights_dir=str(wdir), device="cpu")
    assert codec.requirements()[0].found  # found by name; the hash is checked when loaded
    with pytest.raises(WeightsError, match="446d5c7f") as err:
        codec.encode(_image(), 1)
    assert "fix:" in str(err.value)
    assert codec.describe()["params"]["files"]["1"]["official"] is False
    # an own checkpoint whose name carries a wrong prefix is refused too
    bad = wdir / "mine-deadbeef.pth.tar"
    (wdir / name).rename(bad)
    with pytest.raises(WeightsError, match="deadbeef"):
        catalog.make_codec("bmshj2018-factorized", checkpoint={1: str(bad)}, device="cpu").encode(_image(), 1)


@pytest.mark.parametrize("card,saved", [("cheng2020-anchor", "bmshj2018-hyperprior"),
                                        ("cheng2020-attn", "cheng2020-anchor"),
                                        ("bmshj2018-hyperprior", "mbt2018-mean")])
def test_wrong_architecture_is_a_weights_error(card, saved, no_weights):
    path = _save(_net(saved).state_dict(), no_weights / "ckpt", "other")
    codec = catalog.make_codec(card, checkpoint={1: str(path)}, device="cpu")
    with pytest.raises(WeightsError, match=f"does not hold a {card} model") as err:
        codec.encode(_image(), 1)
    assert "fix:" in str(err.value)


def test_checkpoint_param_must_map_quality_to_path(no_weights):
    with pytest.raises(ConfigError, match="quality"):
        catalog.make_codec("mbt2018", checkpoint="/x.pth.tar")
    codec = catalog.make_codec("mbt2018", checkpoint={"3": "/nope.pth.tar"})
    assert codec.rate_knob.values == (3,)
    req = codec.requirements()[0]
    assert not req.found and "/nope.pth.tar does not exist" in req.detail
    with pytest.raises(WeightsError, match="no quality 1"):
        codec.encode(_image(), 1)


def test_bench_run_with_zoo_named_file_in_weights_dir_writes_rows(no_weights, capsys):
    arch = "cheng2020-anchor"
    wdir = no_weights / "weights"
    _save(_net(arch).state_dict(), wdir, "cheng2020-anchor-1")
    out = no_weights / "results"
    rc = main(["--out", str(out), "run", "--codecs", arch, "--dataset", "demo", "--weights-dir", str(wdir),
               "--rates", f"{arch}=1", "--metrics", "psnr", "--limit", "1", "-q", "--no-report",
               "--param", "demo.height=64", "--param", "demo.width=96"])  # small: CPU decoding is sequential
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    con = sqlite3.connect(out / "bench.sqlite")
    try:
        rows = [(c, r, s, json.loads(m), json.loads(b), bpp, json.loads(t)) for c, r, s, m, b, bpp, t in
                con.execute("SELECT codec, rate, status, metrics, bytes, bpp, seconds FROM rows")]
    finally:
        con.close()
    assert len(rows) == 1
    codec, rate, status, metrics, nbytes, bpp, seconds = rows[0]
    assert (codec, rate, status) == (arch, "1", "ok")
    assert set(nbytes) == {"header", "y", "z"} and nbytes["header"] == 10
    assert bpp == pytest.approx(8 * sum(nbytes.values()) / (64 * 96))
    assert metrics["bpp_y"] == pytest.approx(8 * nbytes["y"] / (64 * 96))
    assert metrics["bpp_z"] == pytest.approx(8 * nbytes["z"] / (64 * 96))
    assert "psnr" in metrics and seconds["encode"] > 0 and seconds["decode"] > 0


def test_without_weights_all_skips_each_zoo_card_with_the_reason(no_weights, capsys):
    codecs, skipped = runner.resolve_codecs(["all"], {})
    reasons = dict(skipped)
    for arch in ARCHITECTURES:
        for name in (arch, f"{arch}-msssim"):
            assert name in reasons and name not in {c.name for c in codecs}
    assert "cheng2020-anchor-1-dad2ebff.pth.tar" in reasons["cheng2020-anchor"]
    assert "https://compressai.s3.amazonaws.com/models/v1" in reasons["cheng2020-anchor"]
    assert "cheng2020_anchor-ms-ssim-6-f2dc1913.pth.tar" in reasons["cheng2020-anchor-msssim"]
    with pytest.raises(UnavailableError):  # explicitly named: an error, not a skip
        runner.resolve_codecs(["mbt2018"], {})
    assert main(["doctor"]) == 0
    screen = capsys.readouterr().out
    line = next(s for s in screen.splitlines() if "mbt2018-mean-msssim" in s)
    assert "bench fetch compressai-mbt2018-mean-ms-ssim" in line  # one line: the fetch command
    assert main(["doctor", "-v"]) == 0  # the details: each file and where CompressAI publishes it
    details = capsys.readouterr().out
    assert "mbt2018-mean-ms-ssim-8-0cc7b94f.pth.tar" in details and "compressai.s3.amazonaws.com" in details


def test_weights_dir_reaches_only_codecs_that_take_it(no_weights):
    assert catalog.make_codec("mbt2018", weights_dir="/w").weights_dir == "/w"
    catalog.make_codec("jpeg", weights_dir="/w")  # takes none: not passed


def test_architecture_facts_match_compressais_zoo():
    from compressai.models import JointAutoregressiveHierarchicalPriors

    assert set(ARCHITECTURES) == set(zoo.model_urls)
    for arch, facts in ARCHITECTURES.items():
        cls = zoo.model_architectures[arch]
        assert cls.__name__ == facts.model_class
        assert issubclass(cls, JointAutoregressiveHierarchicalPriors) == facts.autoregressive
        assert max(zoo.cfgs[arch]) == facts.max_quality == max(zoo.model_urls[arch]["ms-ssim"])
        assert catalog.make_codec(arch).rate_knob.values == tuple(range(1, facts.max_quality + 1))


def test_sweep_of_own_compressai_checkpoints_labels_each_with_the_given_quality(no_weights, capsys):
    """A training run's snapshots are one model at one λ each: `bench sweep` gives each file to
    the quality named by --rates and evaluates it; without --rates it refuses before any work."""
    arch = "bmshj2018-factorized"
    folder = no_weights / "train"
    files = []
    for epoch, seed in ((1, 1), (2, 2)):
        tmp = _save(_net(arch, seed=seed).state_dict(), folder, "x")
        files.append(tmp.rename(folder / f"checkpoint_epoch={epoch}.pth.tar"))
    out = no_weights / "results"
    args = ["--out", str(out), "sweep", "--codec", arch, "--checkpoints", str(folder / "*.pth.tar"),
            "--dataset", "demo", "--metrics", "psnr", "--limit", "1", "-q",
            "--param", "demo.height=64", "--param", "demo.width=96"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"fix: add --rates {arch}=Q" in err and "Traceback" not in err
    if (out / "bench.sqlite").exists():  # refused before any evaluation
        con = sqlite3.connect(out / "bench.sqlite")
        assert con.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
        con.close()
    assert main([*args, "--rates", f"{arch}=3"]) == 0, capsys.readouterr().err
    table = (out / f"sweep-{arch}" / "sweep.csv").read_text().splitlines()
    assert len(table) == 3  # header + one row per checkpoint at quality 3
    con = sqlite3.connect(out / "bench.sqlite")
    try:
        runs = [json.loads(m) for (m,) in con.execute("SELECT meta FROM runs ORDER BY created")]
        rows = list(con.execute("SELECT run_id, rate, status FROM rows"))
    finally:
        con.close()
    assert [r[1:] for r in rows] == [("3", "ok"), ("3", "ok")] and len({r[0] for r in rows}) == 2
    shas = [r["codecs"][arch]["params"]["files"]["3"]["sha256"] for r in runs]
    assert shas == [W.sha256_file(f) for f in files]  # each run evaluated its own snapshot
