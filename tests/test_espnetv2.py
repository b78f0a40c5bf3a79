"""ESPNetv2 segmenter: strict loading of the published EdgeNets weights, protocol, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.datasets.classes import CITYSCAPES_19
from bench.errors import ConfigError, WeightsError
from bench.runtime import weights as W
from bench.segmenters.espnetv2 import (
    KNOWN_WEIGHTS,
    ESPNetv2Segmenter,
    build_network,
    fold_batchnorm,
    load_network,
    random_init,
    weight_spec,
)

# Parameter counts in the EdgeNets model zoo README (millions, 2 decimals).
PUBLISHED_PARAMS_M = {0.5: 0.08, 1.0: 0.23, 1.5: 0.47, 2.0: 0.79}


def _espnet_dir(shared_dir: Path) -> Path:
    return shared_dir / "weights" / "espnetv2"


def _files(shared_dir: Path) -> list[Path]:
    files = sorted(_espnet_dir(shared_dir).glob("*.pth"))
    assert len(files) == 7, files
    return files


def _scale_of(path: Path) -> float:
    return float(path.name.split("_s_")[1].split("_")[0])


def test_all_published_files_load_strictly_with_known_hashes(shared_dir: Path) -> None:
    for path in _files(shared_dir):
        scale = _scale_of(path)
        size = tuple(int(v) for v in path.stem.rsplit("_", 1)[1].split("x"))
        spec = weight_spec(scale, size)
        assert spec.filename == path.name
        assert W.resolve(spec, weights_dir=path.parent) == path  # sha256 prefix matches
        raw = torch.load(path, map_location="cpu", weights_only=True)
        net = load_network(path, scale)
        own = net.state_dict()
        assert set(own) == set(raw)  # every key, both ways
        for key, value in raw.items():
            assert torch.equal(own[key], value), key
        n_params = sum(p.numel() for p in net.parameters()) / 1e6
        assert round(n_params, 2) == PUBLISHED_PARAMS_M[scale]


def _kodak(shared_dir: Path, name: str) -> np.ndarray:
    with Image.open(shared_dir / "data" / "kodak" / f"{name}.png") as im:
        return np.asarray(im.convert("RGB"))


def test_real_photos_give_sensible_deterministic_labels(shared_dir: Path) -> None:
    seg = ESPNetv2Segmenter(scale=1.0, input_size="512x256", weights_dir=str(_espnet_dir(shared_dir)), device="cpu")
    assert seg.requirements()[0].found and not seg.random_weights
    facade = _kodak(shared_dir, "kodim08")  # a street of house facades
    first = seg.predict(facade)
    assert first.shape == facade.shape[:2] and first.dtype == np.uint8
    classes, counts = np.unique(first, return_counts=True)
    assert len(classes) > 1 and set(classes.tolist()) <= set(range(19)) | {255}
    building = CITYSCAPES_19.names.index("building")
    assert counts[classes == building].sum() / first.size > 0.5  # facades are mostly "building"
    # Same input again (in a batch, next to another size) → identical labels.
    crop = np.ascontiguousarray(facade[100:300, 50:450])
    batch = seg.predict_batch([facade, crop])
    assert np.array_equal(batch[0], first)
    assert batch[1].shape == crop.shape[:2] and (batch[1] == building).mean() > 0.5
    desc = seg.describe()
    assert desc["weights_sha256"].startswith(KNOWN_WEIGHTS[(1.0, (512, 256))])
    assert desc["input_size"] == "512x256" and desc["class_set"] == "cityscapes19"
    assert seg.identity == "espnetv2-s1.0-512x256-fused@" + desc["weights_sha256"][:12]
    # The network exactly as loaded (no BN folding, NCHW) labels the photo the same way.
    plain = ESPNetv2Segmenter(scale=1.0, input_size="512x256", weights_dir=str(_espnet_dir(shared_dir)),
                              device="cpu", optimize=False)
    assert plain.identity == "espnetv2-s1.0-512x256@" + desc["weights_sha256"][:12]
    assert (plain.predict(facade) == first).mean() > 0.9999


def test_default_is_s2_at_1024x512(shared_dir: Path) -> None:
    seg = ESPNetv2Segmenter(weights_dir=str(_espnet_dir(shared_dir)))
    assert (seg.scale, seg.input_size) == (2.0, (1024, 512))
    assert seg.describe()["weights_sha256"].startswith("a72d59699801c7ce")


def test_wrong_file_lists_mismatched_keys(tmp_path: Path, shared_dir: Path) -> None:
    state = torch.load(_espnet_dir(shared_dir) / "espnetv2_s_0.5_city_512x256.pth", map_location="cpu",
                       weights_only=True)
    state["extra.head.weight"] = torch.zeros(1)
    state["base_net.level1.conv.kernel"] = state.pop("base_net.level1.conv.weight")
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(WeightsError) as err:
        load_network(bad, 0.5)
    msg = str(err.value)
    assert "base_net.level1.conv.weight" in msg and "extra.head.weight" in msg
    assert "base_net.level1.conv.kernel" in msg and "1 missing" in msg and "2 unexpected" in msg
    # The right keys but another width: shapes are listed.
    with pytest.raises(WeightsError, match="wrong shape.*base_net.level1.conv.weight"):
        load_network(_espnet_dir(shared_dir) / "espnetv2_s_0.5_city_512x256.pth", 1.0)
    # Through the segmenter, a foreign file fails the published sha256 first.
    with pytest.raises(WeightsError, match="sha256"):
        ESPNetv2Segmenter(scale=0.5, input_size="512x256", weights=str(bad)).predict(np.zeros((8, 8, 3), np.uint8))


def test_wrapped_checkpoint_is_unwrapped(tmp_path: Path) -> None:
    net = build_network(0.5)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, wrapped)
    loaded = load_network(wrapped, 0.5)
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_random_weights_mode_and_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("BENCH_ESPNETV2_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    strict = ESPNetv2Segmenter(scale=0.5, input_size="512x256", weights_dir=str(tmp_path))
    req = strict.requirements()
    assert not req[0].found and "espnetv2_s_0.5_city_512x256.pth" in req[0].detail
    with pytest.raises(WeightsError, match="BENCH_ESPNETV2_WEIGHTS"):
        strict.predict(image)
    a = ESPNetv2Segmenter(scale=0.5, input_size="512x256", weights_dir=str(tmp_path), allow_random_weights=True)
    b = ESPNetv2Segmenter(scale=0.5, input_size="512x256", weights_dir=str(tmp_path), allow_random_weights=True)
    assert a.random_weights and a.describe()["random_weights"] is True and a.identity.endswith("@random0")
    la, lb = a.predict(image), b.predict(image)
    assert la.shape == (37, 53) and np.array_equal(la, lb)  # seeded
    other = ESPNetv2Segmenter(scale=0.5, input_size="512x256", weights_dir=str(tmp_path),
                              allow_random_weights=True, seed=1).network()
    assert not torch.equal(a.network().state_dict()["base_net.level1.conv.weight"],
                           other.state_dict()["base_net.level1.conv.weight"])


def test_bad_configurations_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="0.75"):
        ESPNetv2Segmenter(scale=0.75)
    with pytest.raises(ConfigError, match="no published"):
        ESPNetv2Segmenter(scale=2.0, input_size="512x256")
    with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
        ESPNetv2Segmenter(input_size="big")
    seg = ESPNetv2Segmenter(scale=0.5, input_size="512x256", allow_random_weights=True)
    with pytest.raises(ConfigError, match="uint8"):
        seg.predict(np.zeros((8, 8, 3), np.float32))


def test_folding_batchnorm_keeps_the_logits() -> None:
    """BN folded into the preceding convs (+ channels_last) = the network as built, to float rounding."""
    net = build_network(0.5)
    random_init(net, 3)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():  # non-trivial statistics, so that folding has something to fold
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    net.eval()
    fused = build_network(0.5)
    fused.load_state_dict(net.state_dict())
    fused.eval()
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    folded = fold_batchnorm(fused)
    assert folded >= 10 and sum(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules()) == n_bn - folded
    fused = fused.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 128, 256, generator=gen)
    with torch.inference_mode():
        a, b = net(x), fused(x)
    assert a.abs().max() > 0.1
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.999
