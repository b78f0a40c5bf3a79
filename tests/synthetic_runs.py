"""A stored run built without coding anything: jpeg at ``points`` rate points on ``images``
images with per-image PSNR, mIoU states (per-class IoU) and FID/KID feature states.

Features are seeded Gaussians (D = 2048, the Inception's) whose distance to the reference
grows as the quality drops, so FID/KID are finite and ordered."""

from __future__ import annotations

import hashlib

import numpy as np

from bench.metrics.fidelity import DIM
from bench.registry import catalog
from bench.storage.store import Row, Store

RUN_ID = "demo-synthetic0001"


def _order(image_id: str) -> np.ndarray:
    key = int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "little")
    return np.array([[key, 0]], dtype=np.uint64)


def feature_state(rec: np.ndarray, ref: np.ndarray, image_id: str) -> dict[str, np.ndarray]:
    """An FID/KID state of one whole image (1×D features each)."""
    return {"rec": rec.reshape(1, -1), "ref": ref.reshape(1, -1), "order": _order(image_id),
            "patch_px": np.zeros(1)}


def make_run(store: Store, *, points: int = 26, images: int = 4, seed: int = 0, miou: bool = True,
             run_id: str = RUN_ID) -> str:
    """Store the synthetic run and return its id."""
    rng = np.random.default_rng(seed)
    metrics = ["psnr", "fid", "kid"] + (["miou"] if miou else [])
    meta = {"metrics": {m: {"name": m, "version": "1", "random_weights": m != "psnr"} for m in metrics},
            "metric_params": {}, "dataset": {"name": "demo", "n_images": images, "content_hash": "c0ffee",
                                             "protocol": {"name": "demo"}},
            "codecs": {"jpeg": {"name": "jpeg"}}, "machine": {"device": "cpu"}}
    store.begin_run(run_id, {"dataset": "demo", "codecs": ["jpeg"], "metrics": metrics}, meta)
    refs = rng.normal(size=(images, DIM))
    seg = catalog.make_metric("miou", allow_random_weights=True) if miou else None
    h = w = 64
    for p in range(points):
        quality = 3 + 4 * p  # 3, 7, …: rates that sort differently as text
        for i in range(images):
            image_id = f"img{i:02d}"
            noise = 2.0 / (1 + p)
            rec = refs[i] + rng.normal(scale=noise, size=DIM)
            psnr = 20 + p + i * 0.1
            mse = 255.0 ** 2 / 10 ** (psnr / 10)
            states = {"fid": feature_state(rec, refs[i], image_id), "kid": feature_state(rec, refs[i], image_id),
                      "psnr": {"n": np.array(1.0), "sum_psnr": np.array(psnr), "n_inf": np.array(0.0),
                               "sum_mse": np.array(mse)}}
            if seg is not None:
                st = seg.init()
                c = len(st["inter_gt"])
                union = rng.integers(50, 100, size=c)
                for ref in ("gt", "orig"):
                    st[f"inter_{ref}"] = (union * min(1.0, 0.3 + 0.03 * p)).astype(np.int64)
                    st[f"union_{ref}"] = union.astype(np.int64)
                    st[f"images_{ref}"] = np.array(1, np.int64)
                states["miou"] = st
            nbytes = int(200 + 150 * p + rng.integers(0, 50))
            store.put(run_id, Row("jpeg", str(quality), image_id, height=h, width=w, bytes={"image": nbytes},
                                  bpp=8 * nbytes / (h * w), metrics={"psnr": psnr, "mse": mse},
                                  states=states))
    store.finish_run(run_id)
    return run_id
