"""A tiny CompressAI model trained with Lightning, for the BenchCallback tests (also run as the
DDP script: ``python tests/lightning_helpers.py OUT`` trains 2 epochs on 2 CPU processes, gloo)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from smooth_images import write_images


def loader(images: list[np.ndarray], batches: int = 4) -> torch.utils.data.DataLoader:
    """160×160 centre crops (a multiple of 16) of ``images``, repeated: ``batches`` batches of 2."""
    x = torch.stack([torch.from_numpy(i[4:164, 8:168].copy()).permute(2, 0, 1).float() / 255 for i in images])
    x = x.repeat(batches * 2 // len(images), 1, 1, 1)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=2)


class Compressor(pl.LightningModule):
    """A FactorizedPrior(8, 8) trained for distortion (and a little rate): its PSNR rises."""

    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__()
        from compressai.models import FactorizedPrior

        torch.manual_seed(0)
        self.net = FactorizedPrior(8, 8)
        self.lr = lr

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        bpp = sum(-torch.log2(v).sum() for v in out["likelihoods"].values()) / (x.shape[0] * x.shape[2] * x.shape[3])
        return F.mse_loss(out["x_hat"], x) * 100 + 0.01 * bpp + 1e-3 * self.net.aux_loss()  # DDP: all params used

    def training_step(self, batch, _i):
        return self._loss(batch[0])

    def validation_step(self, batch, _i):
        self.log("val_loss", self._loss(batch[0]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)


def ddp_main(out: Path) -> None:
    """Two CPU processes (gloo): the factory calls update(force=True) on what it is given."""
    from bench.integrations.lightning import BenchCallback

    images = write_images(out / "imgs")

    def factory(module):
        module.net.update(force=True)  # crashed gloo on the live module ("data size doesn't match")
        return module.net

    callback = BenchCallback(factory, str(out / "imgs"), metrics=["psnr"], store=out / "bench.sqlite")
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp", callbacks=[callback],
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    module = Compressor()
    trainer.fit(module, loader(images), loader(images, 1))
    key = "bench/factorizedprior/psnr/rate_live"
    record = {"rank": trainer.global_rank, "logged": float(trainer.callback_metrics[key]),
              "evaluated": sorted(callback.results), "quantiles_shape": list(module.net.entropy_bottleneck
                                                                              ._quantized_cdf.shape)}
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    ddp_main(Path(sys.argv[1]))
