"""LPIPS metric against the lpips package's own pipeline.

No ImageNet weights can be downloaded here, so the backbone is a random-initialised
torchvision network saved under its torch hub file name in a temporary TORCH_HOME: the
reference ``lpips.LPIPS(net=...)`` then loads it through torchvision exactly as it would
load the real file, and takes the real v0.1 linear layers from the wheel.
"""

from __future__ import annotations

import dataclasses
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from bench.datasets.base import Sample
from bench.errors import WeightsError
from bench.metrics import lpips_metric as LM
from bench.metrics.base import Pair
from bench.runtime import weights as W


def _images(n: int, size: int = 64, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = [data.astronaut(), data.coffee(), data.chelsea()]
    refs, recs = [], []
    for i in range(n):
        src = sources[i % len(sources)]
        y, x = rng.integers(0, src.shape[0] - size), rng.integers(0, src.shape[1] - size)
        ref = np.ascontiguousarray(src[y:y + size, x:x + size])
        refs.append(ref)
        recs.append(np.clip(ref + rng.normal(0, 8 + 6 * i, ref.shape), 0, 255).astype(np.uint8))
    return refs, recs


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


_ENV = ("BENCH_WEIGHTS_DIR", "BENCH_LPIPS_ALEX", "BENCH_LPIPS_VGG", "BENCH_LPIPS_SQUEEZE")
_PUBLISHED = dict(LM.BACKBONES)  # the real specs, before any test accepts a random file's hash


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated, empty torch hub cache (TORCH_HOME); the published hashes apply."""
    monkeypatch.setattr(LM, "BACKBONES", dict(_PUBLISHED))
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def random_hub(tmp_path_factory: pytest.TempPathFactory):
    """A torch hub cache holding random torchvision AlexNet and SqueezeNet 1.1 backbones under
    their hub file names; their hashes are accepted for the duration of the module."""
    folder = tmp_path_factory.mktemp("torch") / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        for var in _ENV:
            mp.delenv(var, raising=False)
        mp.setenv("TORCH_HOME", str(folder.parent.parent))
        for net, builder in (("alex", torchvision.models.alexnet), ("squeeze", torchvision.models.squeezenet1_1)):
            torch.manual_seed(1)
            spec = LM.BACKBONES[net]
            torch.save(builder(weights=None).state_dict(), folder / spec.filename)
            mp.setitem(LM.BACKBONES, net, dataclasses.replace(spec, sha256=W.sha256_file(folder / spec.filename)))
        yield folder


@pytest.fixture(scope="module")
def alex(random_hub: Path) -> LM.LPIPS:
    return LM.LPIPS(net="alex", device="cpu")


def _reference(net: str, refs: list[np.ndarray], recs: list[np.ndarray]) -> np.ndarray:
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, version="0.1", verbose=False).eval()  # torchvision loads the hub file
    to = lambda im: torch.tensor(im, dtype=torch.float32).permute(2, 0, 1)[None] / 127.5 - 1.0
    with torch.no_grad():
        return np.array([float(model(to(a), to(b))) for a, b in zip(refs, recs)])


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_equals_lpips_package_and_is_batch_independent(net: str, random_hub: Path, alex: LM.LPIPS,
                                                       no_network: None) -> None:
    refs, recs = _images(4)
    expected = _reference(net, refs, recs)
    assert np.all(expected > 0) and len(set(np.round(expected, 6))) == 4  # a test that can fail

    metric = alex if net == "alex" else LM.LPIPS(net=net, device="cpu")
    metric.batch_size = 1
    state = metric.init()
    one_by_one = np.array([metric.update(state, Pair(Sample(str(i), a), b, 0))["lpips"]
                           for i, (a, b) in enumerate(zip(refs, recs))])
    np.testing.assert_allclose(one_by_one, expected, rtol=1e-5, atol=1e-7)

    metric.batch_size = 4
    np.testing.assert_allclose(metric.distances(refs, recs), one_by_one, rtol=1e-5, atol=1e-7)
    assert metric.compute(state)["lpips"] == pytest.approx(one_by_one.mean(), rel=1e-12)
    assert metric.distances([refs[0]], [refs[0]])[0] == pytest.approx(0.0, abs=1e-7)
    assert not metric.random_weights
    described = metric.describe()
    assert described["net"] == net and described["lin_sha256"] == LM.LIN_LAYERS[net].sha256
    assert described["backbone_sha256"] == W.sha256_file(random_hub / LM.BACKBONES[net].filename)


def test_mixed_sizes_are_grouped(alex: LM.LPIPS) -> None:
    refs, recs = _images(3, size=64)
    big_ref, big_rec = _images(1, size=80, seed=5)
    refs, recs = refs[:1] + big_ref + refs[1:], recs[:1] + big_rec + recs[1:]
    alex.batch_size = 4
    mixed = alex.distances(refs, recs)
    alone = [alex.distances([a], [b])[0] for a, b in zip(refs, recs)]
    np.testing.assert_allclose(mixed, alone, rtol=1e-5, atol=1e-7)


def test_an_original_shared_by_a_batch_goes_through_the_backbone_once(alex: LM.LPIPS) -> None:
    """One image, four reconstructions (the pipeline's case): the original's features are
    computed once per batch, and the distances equal those of separate copies and of the
    lpips package's own forward."""
    refs, recs = _images(4)
    original = refs[0]
    seen: list[int] = []
    hook = alex.model().net.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))
    try:
        alex.batch_size = 8
        shared = alex.distances([original] * 4, recs)
        assert seen == [1, 4]  # the original once, then the four reconstructions
        seen.clear()
        copies = alex.distances([original.copy() for _ in range(4)], recs)
        assert seen == [4, 4]
    finally:
        hook.remove()
    np.testing.assert_allclose(shared, copies, rtol=1e-5, atol=1e-7)
    model = alex.model()
    with torch.no_grad():
        package = model(LM.to_lpips_input([original] * 4), LM.to_lpips_input(recs)).reshape(4).double().numpy()
    np.testing.assert_allclose(shared, package, rtol=1e-5, atol=1e-7)
    assert len(set(np.round(shared, 6))) == 4


def test_missing_backbone_names_file_hash_and_source(hub: Path, tmp_path: Path) -> None:
    metric = LM.LPIPS(weights_dir=str(tmp_path / "empty"))  # construction loads nothing
    reqs = {r.name: r for r in metric.requirements()}
    backbone = reqs[LM.BACKBONES["alex"].name]
    assert not backbone.found and "alexnet-owt-7be5be79.pth" in backbone.detail
    assert reqs[LM.LIN_LAYERS["alex"].name].found  # shipped in the lpips wheel
    with pytest.raises(WeightsError) as err:
        metric.model()
    text = str(err.value)
    assert "alexnet-owt-7be5be79.pth" in text and "7be5be79" in text
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in text


def test_wrong_hash_is_refused_even_with_random_weights(hub: Path) -> None:
    torch.save({"features.0.weight": torch.zeros(1)}, hub / "alexnet-owt-7be5be79.pth")
    with pytest.raises(WeightsError, match="expected 7be5be79"):
        LM.LPIPS(allow_random_weights=True, device="cpu").model()


def test_random_weights_mode_is_seeded_and_marked(hub: Path, no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    refs, recs = _images(2)
    a = LM.LPIPS(net="squeeze", allow_random_weights=True, device="cpu")
    assert all(r.found for r in a.requirements())
    values = a.distances(refs, recs)
    monkeypatch.setattr(LM, "_BUILT", {})  # built again, not shared: the seed makes the same weights
    b = LM.LPIPS(net="squeeze", allow_random_weights=True, device="cpu")
    assert b.model() is not a.model()
    np.testing.assert_array_equal(values, b.distances(refs, recs))
    assert a.random_weights and a.describe()["random_weights"] is True
    assert a.describe()["backbone_sha256"].startswith("random")


def test_instances_share_one_network_per_weights_and_device(alex: LM.LPIPS, random_hub: Path) -> None:
    """A run, a sweep or a training loop's evaluations build each network once per process."""
    again = LM.LPIPS(net="alex", device="cpu")
    assert again.model() is alex.model() and again.describe()["backbone_sha256"] == alex.describe()["backbone_sha256"]
    assert LM.LPIPS(net="squeeze", device="cpu").model() is not alex.model()


def test_shared_lin_layers_match_the_wheel(random_hub: Path, shared_dir: Path) -> None:
    refs, recs = _images(2)
    wheel = LM.LPIPS(net="squeeze", device="cpu").distances(refs, recs)
    shared = LM.LPIPS(net="squeeze", device="cpu", lin_path=str(shared_dir / "weights/lpips/v0.1/squeeze.pth"))
    np.testing.assert_array_equal(shared.distances(refs, recs), wheel)
    assert shared.describe()["lin_sha256"] == LM.LIN_LAYERS["squeeze"].sha256
