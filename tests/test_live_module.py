"""A live model as a codec: from_module / evaluate(model), keyed by its state, never stale.

References: CompressAI's own ``eval_model`` (``inference``: pad, compress, decompress, its PSNR
of the rounded images, its strings-only bpp) on the same network, recomputed at each state.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("compressai.ans")

from smooth_images import write_images as images  # noqa: E402

from bench import evaluate  # noqa: E402
from bench.codecs import Codec, Encoded, RateKnob, from_module  # noqa: E402


def small_net(seed: int = 0):
    """A FactorizedPrior with 8 channels (random init): milliseconds per image."""
    from compressai.models import FactorizedPrior

    torch.manual_seed(seed)
    return FactorizedPrior(8, 8)


def eval_model_reference(net, img: np.ndarray) -> dict[str, float]:
    """CompressAI's eval_model ``inference`` on a copy whose entropy tables are updated."""
    import copy

    from compressai.utils.eval_model.__main__ import inference

    ref = copy.deepcopy(net).eval()
    ref.update(force=True)
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    return inference(ref, x)


def perturb(net, seed: int) -> None:
    """One "epoch" of training: the synthesis weights move."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.g_s.parameters():
            p.add_(0.2 * p.abs().mean() * torch.randn(p.shape, generator=g))


def test_live_model_at_three_epochs_gives_eval_models_psnr(tmp_path):
    net = small_net()
    imgs = images(tmp_path / "imgs")
    store = tmp_path / "bench.sqlite"
    before = {k: v.clone() for k, v in net.state_dict().items()}
    psnrs = []
    for epoch in range(3):
        if epoch:
            perturb(net, epoch)
            before = {k: v.clone() for k, v in net.state_dict().items()}
        rows = evaluate(net, str(tmp_path / "imgs"), metrics=["psnr"], store=store).sort_values("image_id")
        refs = [eval_model_reference(net, img) for img in imgs]
        assert list(rows["codec"]) == ["factorizedprior"] * 2 and list(rows["image_id"]) == ["img0", "img1"]
        assert np.allclose(rows["psnr"], [r["psnr-rgb"] for r in refs], rtol=0, atol=1e-4)
        # the strings-only bpp is eval_model's; the real bpp adds the 10-byte header
        assert np.allclose(rows["bpp_compressai"], [r["bpp"] for r in refs], rtol=1e-12)
        assert np.allclose(rows["bpp"] - rows["bpp_y"], 80 / (168 * 176))
        psnrs.append(rows["psnr"].mean())
        # the live module is untouched: no update(), same weights, still in training mode
        assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert len(set(np.round(psnrs, 6))) == 3


def test_same_state_is_cached_changed_state_is_not(tmp_path):
    net = small_net()
    images(tmp_path / "imgs", n=1)
    first = evaluate(from_module(net, name="net"), str(tmp_path / "imgs"), metrics=["psnr"], store=tmp_path)
    again = evaluate(from_module(net, name="net"), str(tmp_path / "imgs"), metrics=["psnr"], store=tmp_path)
    assert again["run_id"].iloc[0] == first["run_id"].iloc[0]  # same weights: the same run, resumed
    from bench import summary
    from bench.report.tables import printed_columns

    table = summary(tmp_path, run=first["run_id"].iloc[0])  # CompressAI's strings-only rate, beside bpp
    assert table["bpp_compressai"].iloc[0] == pytest.approx(first["bpp_compressai"].mean(), rel=1e-12)
    assert "bpp_compressai" not in printed_columns(table)  # CSV only: the printed tables keep to 100 columns
    perturb(net, 7)
    moved = evaluate(from_module(net, name="net"), str(tmp_path / "imgs"), metrics=["psnr"], store=tmp_path)
    assert moved["run_id"].iloc[0] != first["run_id"].iloc[0]
    assert moved["psnr"].iloc[0] != first["psnr"].iloc[0]


class VersionedWrapper(Codec):
    """A hand-written wrapper that declares ``version`` but no weights hash (issue 23, item 15)."""

    name = "wrapped"
    version = "1"
    rate_knob = RateKnob("model", ("live",), higher_is_better=True)

    def __init__(self, net):
        super().__init__()
        self.net = net

    def encode(self, image, rate, *, semantics=None):
        x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            y = self.net(x).clamp(0, 1).mul(255).round().byte()[0].permute(1, 2, 0).numpy()
        return Encoded({"raw": y.tobytes()}, {"h": image.shape[0], "w": image.shape[1]})

    def decode(self, parts):
        side = round((len(parts["raw"]) / 3) ** 0.5)
        return np.frombuffer(parts["raw"], np.uint8).reshape(side, side, 3).copy()


def test_versioned_wrapper_is_keyed_by_weights_not_version(tmp_path):
    """Epochs 2 and 3 reported epoch 1's PSNR when a wrapper declared only ``version``."""
    net = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        net.weight.copy_(torch.eye(3)[:, :, None, None])
        net.bias.zero_()
    psnrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a declared codec: no UncachedCodecWarning
        for _epoch in range(3):
            with torch.no_grad():
                net.weight.mul_(0.9)
            psnrs.append(evaluate(VersionedWrapper(net), "demo", metrics=["psnr"], limit=1, store=tmp_path,
                                   dataset_params={"height": 32, "width": 32})["psnr"].iloc[0])
    assert psnrs[0] > psnrs[1] > psnrs[2]  # the weights shrink: quality falls at every epoch


def test_not_a_compressai_module_says_what_is_needed():
    from bench.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        from_module(torch.nn.Linear(2, 2))
    assert "compress" in err.value.fix


def test_folder_path_that_does_not_exist_is_a_config_error(tmp_path):
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="neither a registered name nor a folder"):
        evaluate("jpeg", str(tmp_path / "nothing"), metrics=["psnr"], store=tmp_path)


def test_codec_keyword_takes_one_model_and_refuses_both_or_neither(tmp_path):
    from bench.errors import ConfigError

    net = small_net()
    images(tmp_path / "imgs", n=1)
    folder = str(tmp_path / "imgs")
    by_keyword = evaluate(codec=net, dataset=folder, metrics=["psnr"], store=tmp_path)
    positional = evaluate([net], folder, metrics=["psnr"], store=tmp_path)
    assert list(by_keyword["codec"]) == ["factorizedprior"]
    assert by_keyword["run_id"].iloc[0] == positional["run_id"].iloc[0]  # the same codec, the same run
    named = evaluate(codec="jpeg", dataset="demo", metrics=["psnr"], limit=1, rates=[50], store=tmp_path)
    assert list(named["codec"]) == ["jpeg"]
    for kwargs in ({"codecs": ["jpeg"], "codec": net}, {}, {"codec": ["jpeg", "webp"]}):
        with pytest.raises(ConfigError) as err:
            evaluate(dataset="demo", metrics=["psnr"], store=tmp_path, **kwargs)
        assert err.value.exit_code == 2 and "codec" in err.value.fix
    with pytest.raises(ConfigError, match="no dataset"):
        evaluate(codec="jpeg", metrics=["psnr"], store=tmp_path)
