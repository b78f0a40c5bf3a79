#!/usr/bin/env bash
# Build mmcv 2.1.0 (with its CPU ops) ONCE into a wheel cache outside the clone, then
# install it plus mmsegmentation 1.2.2 and its pure-Python dependencies into a venv.
#
# mmseg 1.2.2 requires mmcv>=2.0.0rc4,<2.2.0; no prebuilt mmcv 2.1.0 wheel exists for
# current torch, so it is compiled from the sdist (~13+ min on 2 cores). Later runs find
# the wheel in the cache and only install (idempotent).
#
# Usage: scripts/build_mmcv.sh [PYTHON]        (default: .venv/bin/python of this checkout)
# Env:   SEMCODEC_WHEEL_CACHE (default ~/.cache/semcodec-bench/wheels), MAX_JOBS (default 1),
#        NICE (default 10), MMCV_VERSION (default 2.1.0), MMSEG_VERSION (default 1.2.2).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-$here/.venv/bin/python}"
CACHE="${SEMCODEC_WHEEL_CACHE:-$HOME/.cache/semcodec-bench/wheels}"
MMCV_VERSION="${MMCV_VERSION:-2.1.0}"
MMSEG_VERSION="${MMSEG_VERSION:-1.2.2}"
export MAX_JOBS="${MAX_JOBS:-1}"
NICE="${NICE:-10}"

mkdir -p "$CACHE"
pyver="$("$PY" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')"
torchver="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
# The compiled ops are tied to the torch ABI: keep one wheel per (python, torch).
slot="$CACHE/mmcv-$MMCV_VERSION-$pyver-torch$torchver"
mkdir -p "$slot"

wheel="$(ls "$slot"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
if [[ -z "$wheel" ]]; then
    echo "[build_mmcv] no cached wheel in $slot: building mmcv==$MMCV_VERSION with ops (slow)"
    # mmcv's setup.py uses pkg_resources (removed in setuptools>=81) and must see the installed torch.
    "$PY" -m pip install "setuptools<81" wheel
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    MMCV_WITH_OPS=1 FORCE_CUDA=0 nice -n "$NICE" "$PY" -m pip wheel --no-build-isolation --no-deps \
        -w "$tmp" "mmcv==$MMCV_VERSION"
    mv "$tmp"/mmcv-"$MMCV_VERSION"-*.whl "$slot"/
    wheel="$(ls "$slot"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)"
    echo "[build_mmcv] cached $wheel"
else
    echo "[build_mmcv] using cached $wheel"
fi

"$PY" -m pip install "$wheel" "mmengine" "ftfy" "regex" "mmsegmentation==$MMSEG_VERSION"
"$PY" -c "import mmcv, mmseg, mmcv.ops; print('mmcv', mmcv.__version__, 'mmseg', mmseg.__version__, 'ops ok')"
