"""Cost of the store's integrity check (``PRAGMA quick_check``), which ``bench run`` (before
trusting stored rows), ``report``, ``export``, ``compare``, ``figures`` and ``runs`` pay once.

Builds a store of N synthetic rows shaped like real ones (JSON bytes/metrics/seconds, an npz
of metric states with a 19-class IoU state), then times, from a cold connection:
the quick_check, and reading every row back as a report does (``Store.rows``).

    python benchmarks/store_check.py [--rows 2000 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.storage.store import Row, Store  # noqa: E402


def build(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    with Store(path) as store:
        store.begin_run("r", {"dataset": "x"}, {"tag": None})
        for i in range(n):
            states = {"psnr": {"se": rng.random(3)}, "miou": {"inter": rng.random(19), "union": rng.random(19)}}
            row = Row("jpeg", str(i % 7), f"img{i:06d}", height=512, width=1024, bytes={"image": 20000 + i},
                      bpp=0.3, metrics={"psnr": 30.0, "msssim": 0.97, "lpips": 0.2, "miou_gt_img": 0.6},
                      states=states, seconds={"encode": 0.01, "decode": 0.01})
            store.put("r", row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 20000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.rows:
            path = Path(tmp) / f"s{n}.sqlite"
            build(path, n)
            size = path.stat().st_size / 2**20
            with Store(path, readonly=True) as store:
                t0 = time.perf_counter()
                assert store.problems() == []
                check = time.perf_counter() - t0
            with Store(path, readonly=True) as store:
                t0 = time.perf_counter()
                rows = sum(1 for _ in store.rows("r"))
                read = time.perf_counter() - t0
            print(f"{n:7d} rows  {size:7.1f} MiB  quick_check {check * 1e3:8.1f} ms  "
                  f"reading all rows {read * 1e3:8.1f} ms  check/read {check / read:5.2f}  ({rows} rows)")


if __name__ == "__main__":
    main()
