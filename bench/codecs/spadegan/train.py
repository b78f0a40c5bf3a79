"""Training of the SPADE-GAN codec (``bench train spadegan …``), as in Sec. III-G of the paper.

1. rate–distortion stage: encoder, entropy model and decoder minimise
   ``R(ŷ, ẑ) + λ_mse · MSE₂₅₅ / 1000`` (R in bits per pixel; MSE on the 0..255 scale divided
   by 1000 — the scaling of the authors' earlier FCC code, iwa-shi/fidelity_controllable_
   compression, which this paper builds on; the paper itself does not state it), plus the
   entropy bottleneck's auxiliary (quantile) loss on its own optimiser;
2. GAN stage: encoder and entropy model frozen, only the decoder is fine-tuned with
   ``λ_vgg · L_vgg + λ_mse2 · MSE₂₅₅/1000 + λ_adv · L_adv`` against a label-map-conditioned
   multi-scale patch discriminator (LSGAN, eq. 13–15). The VGG loss (ESRGAN style: L1 on
   VGG-19 conv5_4 features) needs ImageNet VGG-19 weights from ``--vgg-weights``
   (torchvision's ``vgg19-dcbb9e9d.pth``); without them it is left out, with a warning;
3. label-map compressor: cross-entropy R_seg (bits) on the 16×-downscaled label maps.

Data: any bench dataset with labels (``--dataset coco --dataset-param classes=merged9``,
``--dataset cityscapes …``), random ``--crop``² patches (paper: 256, batch 8, Adam, lr 1e-4
dropped to 1e-5 for the last 100k of 500k steps). Images in [0, 1]. The label maps are
converted to ``--class-set`` (default: the dataset's). Output: a checkpoint of
:mod:`.checkpoint`'s format, also written every ``--save-every`` steps.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import ConfigError
from . import checkpoint, labelmap
from .model import LATENT_FACTOR, PAD_MULTIPLE, MultiScaleDiscriminator, SpadeGANConfig, SpadeGANModel, one_hot

log = logging.getLogger("bench.spadegan.train")


# --------------------------------------------------------------------------- losses


def bpp_of(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Σ −log₂ p over all likelihoods / number of image pixels (bits per pixel)."""
    return sum(-torch.log2(lik).sum() for lik in likelihoods.values()) / num_pixels


def mse255(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """MSE on the 0..255 scale of [0, 1] images."""
    return F.mse_loss(x_hat * 255.0, x * 255.0)


def rd_step(model: SpadeGANModel, opt: torch.optim.Optimizer, aux_opt: torch.optim.Optimizer,
            x: torch.Tensor, sem: torch.Tensor, lambda_mse: float) -> dict[str, float]:
    """One rate–distortion step; ``sem``: one-hot label map at 1/16."""
    model.train()
    out = model(x, sem)
    bpp = bpp_of(out["likelihoods"], x.shape[0] * x.shape[2] * x.shape[3])
    mse = mse255(x, out["x_hat"])
    loss = bpp + lambda_mse * mse / 1000.0
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
    opt.step()
    aux = model.aux_loss()
    aux_opt.zero_grad()
    aux.backward()
    aux_opt.step()
    return {"loss": loss.item(), "bpp": bpp.item(), "mse": mse.item(), "aux": aux.item()}


def lsgan(scores: list[torch.Tensor], target: float) -> torch.Tensor:
    return sum(((s - target) ** 2).mean() for s in scores)


class VGGLoss(nn.Module):
    """L1 between VGG-19 conv5_4 (pre-activation) features of ImageNet-normalised images."""

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        from torchvision.models import vgg19

        from bench.runtime.weights import load_state_dict

        net = vgg19(weights=None)
        net.load_state_dict(load_state_dict(weights))
        self.features = net.features[:35].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        f = lambda t: self.features((t - self.mean) / self.std)  # noqa: E731
        return F.l1_loss(f(x_hat), f(x).detach())


def gan_step(model: SpadeGANModel, disc: MultiScaleDiscriminator, g_opt: torch.optim.Optimizer,
             d_opt: torch.optim.Optimizer, x: torch.Tensor, sem_small: torch.Tensor, sem_full: torch.Tensor,
             *, lambda_mse2: float = 0.5, lambda_adv: float = 0.05, lambda_vgg: float = 1.0,
             vgg: VGGLoss | None = None) -> dict[str, float]:
    """One GAN step: decoder (encoder/entropy model frozen, ŷ = round(y)), then discriminator."""
    model.train()
    with torch.no_grad():
        y_hat = torch.round(model.g_a(x))
    x_hat = model.g_s(y_hat, sem_small)
    mse = mse255(x, x_hat)
    adv = lsgan(disc(x_hat, sem_full), 1.0)
    loss = lambda_mse2 * mse / 1000.0 + lambda_adv * adv
    v = torch.zeros(())
    if vgg is not None and lambda_vgg:
        v = vgg(x, x_hat)
        loss = loss + lambda_vgg * v
    g_opt.zero_grad()
    loss.backward()
    g_opt.step()
    d_loss = 0.5 * (lsgan(disc(x_hat.detach(), sem_full), 0.0) + lsgan(disc(x, sem_full), 1.0))
    d_opt.zero_grad()
    d_loss.backward()
    d_opt.step()
    return {"loss_g": loss.item(), "mse": mse.item(), "adv_g": adv.item(), "vgg": v.item(), "loss_d": d_loss.item()}


# --------------------------------------------------------------------------- data


class Batches:
    """Random crops (image in [0, 1], symbols full and 1/16) from a bench dataset."""

    def __init__(self, dataset: Any, class_set: str, num_classes: int, crop: int, batch: int, seed: int = 0,
                 limit: int | None = None, cache: int = 32) -> None:
        if dataset.class_set is None:
            raise ConfigError(f"dataset {dataset.name!r} has no label maps", "train on a dataset with labels")
        if crop % PAD_MULTIPLE:
            raise ConfigError(f"--crop {crop} is not a multiple of {PAD_MULTIPLE}", "use e.g. --crop 256")
        self.dataset, self.class_set, self.num_classes = dataset, class_set, num_classes
        self.crop, self.batch = crop, batch
        self.ids = dataset.ids()[:limit] if limit else dataset.ids()
        if not self.ids:
            raise ConfigError(f"dataset {dataset.name!r} has no images", "check --root / --dataset-param")
        self.rng = np.random.default_rng(seed)
        self.cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.cache_size = cache

    def sample(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(H×W×3 uint8 image, H×W symbols) of one id, converted to the model's classes."""
        if image_id in self.cache:
            return self.cache[image_id]
        s = self.dataset.load(image_id)
        if s.labels is None:
            raise ConfigError(f"{self.dataset.name}:{image_id} has no label map", "train on a dataset with labels")
        labels = labelmap.convert_classes(s.labels, self.dataset.class_set.name, self.class_set)
        item = (s.image, labelmap.to_symbols(labels, self.num_classes))
        if len(self.cache) < self.cache_size:
            self.cache[image_id] = item
        return item

    def _crop(self, image: np.ndarray, sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = self.crop
        h, w = sym.shape
        if h < c or w < c:  # pad small images (edge) up to the crop
            ph, pw = max(0, c - h), max(0, c - w)
            image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")
            sym = np.pad(sym, ((0, ph), (0, pw)), mode="edge")
            h, w = sym.shape
        i, j = int(self.rng.integers(h - c + 1)), int(self.rng.integers(w - c + 1))
        return image[i:i + c, j:j + c], sym[i:i + c, j:j + c]

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B×3×c×c in [0, 1]), full symbols (B×c×c), 1/16 symbols (B×c/16×c/16)."""
        crops = [self._crop(*self.sample(self.ids[int(self.rng.integers(len(self.ids)))])) for _ in range(self.batch)]
        # contiguous NCHW: a channels-last input made torch 2.13's CPU backward corrupt memory
        x = torch.from_numpy(np.ascontiguousarray(np.stack([im for im, _ in crops]).transpose(0, 3, 1, 2),
                                                  dtype=np.float32) / 255.0)
        full = torch.from_numpy(np.stack([s for _, s in crops]))
        small = torch.from_numpy(np.stack([labelmap.downscale(s, LATENT_FACTOR) for _, s in crops]))
        return x, full, small

    def label_maps(self) -> list[np.ndarray]:
        """Whole-image 1/16 symbol maps (as transmitted) of ``batch`` random images."""
        out = []
        for _ in range(self.batch):
            _, sym = self.sample(self.ids[int(self.rng.integers(len(self.ids)))])
            out.append(labelmap.downscale(labelmap.pad_to_multiple(sym, PAD_MULTIPLE), LATENT_FACTOR))
        return out


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench train spadegan", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="bench dataset with labels (coco, cityscapes, demo, …)")
    p.add_argument("--root", help="dataset root (else the card's / env default)")
    p.add_argument("--dataset-param", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset constructor parameter, e.g. classes=merged9, split=train2017")
    p.add_argument("--limit", type=int, help="use only the first N images")
    p.add_argument("--out", required=True, help="checkpoint file to write (e.g. ckpt/lambda0.4.pt)")
    p.add_argument("--init", help="start from this checkpoint (its config wins over the width options)")
    p.add_argument("--class-set", help="label classes of the model (default: the dataset's)")
    p.add_argument("--lambda-mse", type=float, default=0.4, help="λ of stage 1 (paper COCO 0.4/0.75/1.5, "
                   "Cityscapes 0.75/1.5/5.0)")
    p.add_argument("--lambda-mse2", type=float, default=0.5)
    p.add_argument("--lambda-adv", type=float, default=0.05)
    p.add_argument("--lambda-vgg", type=float, default=1.0)
    p.add_argument("--vgg-weights", help="torchvision VGG-19 ImageNet state_dict for the perceptual loss")
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--latent-channels", type=int, default=192)
    p.add_argument("--mixtures", type=int, default=3)
    p.add_argument("--semantic-width", type=int, default=128)
    p.add_argument("--label-hidden", type=int, default=64)
    p.add_argument("--disc-width", type=int, default=64)
    p.add_argument("--steps-rd", type=int, default=500_000)
    p.add_argument("--steps-gan", type=int, default=500_000)
    p.add_argument("--steps-labels", type=int, default=50_000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-final", type=float, default=1e-5)
    p.add_argument("--final-steps", type=int, default=100_000, help="steps at --lr-final at the end of each stage")
    p.add_argument("--label-lr", type=float, default=1e-3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=int, default=32, help="decoded images kept in memory")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--save-every", type=int, default=10_000)
    return p


def _lr_at(args: argparse.Namespace, step: int, total: int) -> float:
    return args.lr_final if step >= total - args.final_steps else args.lr


def _dataset_params(items: Sequence[str], root: str | None) -> dict[str, Any]:
    import yaml

    params: dict[str, Any] = {"root": root} if root else {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--dataset-param {item!r} is not KEY=VALUE", "write e.g. --dataset-param classes=merged9")
        params[key] = yaml.safe_load(value)
    return params


def main(argv: Sequence[str] | None = None) -> int:
    """Train and write a checkpoint; returns 0 (errors raise :class:`bench.errors.BenchError`)."""
    from bench.registry import catalog

    args = build_parser().parse_args(list(argv) if argv is not None else None)
    torch.manual_seed(args.seed)
    dataset = catalog.make_dataset(args.dataset, **_dataset_params(args.dataset_param, args.root))
    if args.init:
        model, label_model, info = checkpoint.load(args.init)
        config = model.config
    else:
        if dataset.class_set is None:
            raise ConfigError(f"dataset {args.dataset!r} has no label maps", "train on a dataset with labels")
        class_set = args.class_set or dataset.class_set.name
        if class_set not in labelmap.NUM_CLASSES:
            raise ConfigError(f"unknown class set {class_set!r}", f"use one of {sorted(labelmap.NUM_CLASSES)}")
        config = SpadeGANConfig(width=args.width, latent_channels=args.latent_channels, mixtures=args.mixtures,
                                semantic_width=args.semantic_width, class_set=class_set,
                                num_classes=labelmap.NUM_CLASSES[class_set], label_hidden=args.label_hidden,
                                lambda_mse=args.lambda_mse)
        model, label_model = checkpoint.build(config)
        info = {"stage": "init", "steps_rd": 0, "steps_gan": 0, "steps_labels": 0}
    device = torch.device(args.device)
    model.to(device)
    label_model.to(device)
    batches = Batches(dataset, config.class_set, config.num_classes, args.crop, args.batch_size, args.seed,
                      args.limit, args.cache)
    info.update({"dataset": args.dataset, "dataset_protocol": str(dataset.protocol()), "lambda_mse": config.lambda_mse})

    def save() -> None:
        model.to("cpu")
        label_model.to("cpu")
        checkpoint.save(args.out, model, label_model, info)
        model.to(device)
        label_model.to(device)

    def after_step(stage: str, step: int, total: int, stats: dict[str, float], t0: float) -> None:
        """Count the step, print every --log-every steps, save every --save-every steps."""
        info.update(stage=stage, **{f"steps_{stage}": int(info.get(f"steps_{stage}", 0)) + 1})
        if (step + 1) % args.log_every == 0 or step == 0:
            print(f"{stage} {step + 1}/{total} " + " ".join(f"{k} {v:.4g}" for k, v in stats.items())
                  + f" ({time.time() - t0:.0f} s)", flush=True)
        if (step + 1) % args.save_every == 0:
            save()

    # stage 1: rate–distortion
    if args.steps_rd:
        aux_names = {n for n, _ in model.named_parameters() if n.endswith(".quantiles")}
        opt = torch.optim.Adam([p for n, p in model.named_parameters() if n not in aux_names], lr=args.lr,
                               betas=(0.0, 0.999))
        aux_opt = torch.optim.Adam([p for n, p in model.named_parameters() if n in aux_names], lr=1e-3)
        t0 = time.time()
        for step in range(args.steps_rd):
            for g in opt.param_groups:
                g["lr"] = _lr_at(args, step, args.steps_rd)
            x, _, small = batches.next()
            stats = rd_step(model, opt, aux_opt, x.to(device), one_hot(small, config.num_symbols).to(device),
                            config.lambda_mse)
            if not math.isfinite(stats["loss"]):
                raise ConfigError(f"stage 1 diverged at step {step}: {stats}", "lower --lr")
            after_step("rd", step, args.steps_rd, stats, t0)

    # stage 2: GAN, decoder only
    if args.steps_gan:
        vgg = None
        if args.vgg_weights and args.lambda_vgg:
            vgg = VGGLoss(args.vgg_weights).to(device)
        elif args.lambda_vgg:
            print("warning: no --vgg-weights given; stage 2 runs without the VGG perceptual loss", flush=True)
        disc = MultiScaleDiscriminator(config.num_symbols, args.disc_width).to(device)
        g_opt = torch.optim.Adam(model.g_s.parameters(), lr=args.lr, betas=(0.0, 0.999))
        d_opt = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.0, 0.999))
        t0 = time.time()
        for step in range(args.steps_gan):
            for o in (g_opt, d_opt):
                for g in o.param_groups:
                    g["lr"] = _lr_at(args, step, args.steps_gan)
            x, full, small = batches.next()
            stats = gan_step(model, disc, g_opt, d_opt, x.to(device), one_hot(small, config.num_symbols).to(device),
                             one_hot(full, config.num_symbols).to(device), lambda_mse2=args.lambda_mse2,
                             lambda_adv=args.lambda_adv, lambda_vgg=args.lambda_vgg, vgg=vgg)
            after_step("gan", step, args.steps_gan, stats, t0)

    # label-map compressor
    if args.steps_labels:
        opt = torch.optim.Adam(label_model.parameters(), lr=args.label_lr)
        for step in range(args.steps_labels):
            maps = [torch.as_tensor(m)[None].to(device) for m in batches.label_maps()]
            label_model.train()
            bits = sum(label_model.rate_bits(m) for m in maps)
            loss = bits / sum(m.numel() for m in maps)
            opt.zero_grad()
            loss.backward()
            opt.step()
            info["steps_labels"] = int(info.get("steps_labels", 0)) + 1
            if (step + 1) % args.log_every == 0 or step == 0:
                print(f"labels {step + 1}/{args.steps_labels} bits/symbol {loss.item():.4g}", flush=True)
    save()
    print(f"wrote {args.out}", flush=True)
    return 0
