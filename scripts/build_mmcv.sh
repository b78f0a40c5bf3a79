#!/usr/bin/env bash
# Install mmcv 2.1.0 (with its CPU ops) plus mmsegmentation 1.2.2 and its pure-Python
# dependencies into a venv: from a prebuilt wheel when one is given, else built ONCE from
# the sdist into a wheel cache outside the clone.
#
# mmseg 1.2.2 requires mmcv>=2.0.0rc4,<2.2.0; no prebuilt mmcv 2.1.0 wheel exists on PyPI for
# current torch, so it is compiled from the sdist (~15-25 min on 2 cores). Later runs find
# the wheel in the cache and only install (idempotent).
#
# Usage: scripts/build_mmcv.sh [--prebuilt-only] [PYTHON] [WHEEL]
#   PYTHON: default .venv/bin/python of this checkout.
#   WHEEL: a prebuilt mmcv wheel; default: the one in $BENCH_WHEELS_DIR/mmcv-VERSION-cpXY-torchT/
#   (BENCH_WHEELS_DIR default ../shared/wheels next to the checkout) for PYTHON's version and torch,
#   if any. A prebuilt wheel is used only when its folder name matches PYTHON's version and torch
#   and, when a README.md beside or above it lists a sha256 for it, that sha256 matches; otherwise
#   the script exits 3 and installs nothing.
#   --prebuilt-only: without a prebuilt wheel, print one line saying how to build, exit 0.
# Env:   SEMCODEC_WHEEL_CACHE (default ~/.cache/semcodec-bench/wheels), MAX_JOBS (default 1),
#        NICE (default 10), MMCV_VERSION (default 2.1.0), MMSEG_VERSION (default 1.2.2).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREBUILT_ONLY=0
if [[ "${1:-}" == --prebuilt-only ]]; then PREBUILT_ONLY=1; shift; fi
PY="${1:-$here/.venv/bin/python}"
WHEEL="${2:-}"
CACHE="${SEMCODEC_WHEEL_CACHE:-$HOME/.cache/semcodec-bench/wheels}"
MMCV_VERSION="${MMCV_VERSION:-2.1.0}"
MMSEG_VERSION="${MMSEG_VERSION:-1.2.2}"
export MAX_JOBS="${MAX_JOBS:-1}"
NICE="${NICE:-10}"

read -r pyver torchver < <("$PY" -c 'import sys, torch
print(f"cp{sys.version_info.major}{sys.version_info.minor}", torch.__version__.split("+")[0])')
# The compiled ops are tied to the torch ABI: keep one wheel per (python, torch).
slotname="mmcv-$MMCV_VERSION-$pyver-torch$torchver"
if [[ -z "$WHEEL" ]]; then
    WHEEL="$(ls "${BENCH_WHEELS_DIR:-$here/../shared/wheels}/$slotname"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null \
             | head -n1 || true)"
fi
if [[ -z "$WHEEL" && "$PREBUILT_ONLY" == 1 ]]; then
    echo "mmseg tests skip: no prebuilt $slotname wheel; BENCH_WITH_MMSEG=1 bash scripts/test.sh builds mmcv (~15-25 min on 2 cores)"
    exit 0
fi

if [[ -n "$WHEEL" ]]; then
    if [[ ! -f "$WHEEL" ]]; then echo "[build_mmcv] no such wheel: $WHEEL" >&2; exit 3; fi
    if [[ "$(basename "$(dirname "$WHEEL")")" != "$slotname" || "$(basename "$WHEEL")" != mmcv-"$MMCV_VERSION"-"$pyver"-* ]]; then
        echo "[build_mmcv] $WHEEL is not built for $slotname (this python and torch): not used" >&2
        exit 3
    fi
    name="$(basename "$WHEEL")"
    readme=""
    for candidate in "$(dirname "$WHEEL")/README.md" "$(dirname "$(dirname "$WHEEL")")/README.md"; do
        if [[ -f "$candidate" ]] && grep -q "$name" "$candidate"; then readme="$candidate"; break; fi
    done
    if [[ -n "$readme" ]]; then
        want="$(grep "$name" "$readme" | grep -oE '[0-9a-f]{64}' | head -n1)"
        got="$(sha256sum "$WHEEL" | cut -d' ' -f1)"
        if [[ -n "$want" && "$want" != "$got" ]]; then
            echo "[build_mmcv] sha256 of $WHEEL is $got, $readme says $want: not used" >&2
            exit 3
        fi
        echo "[build_mmcv] using prebuilt $WHEEL (sha256 ${got:0:16}… as listed in $readme)"
    else
        echo "[build_mmcv] using prebuilt $WHEEL (no sha256 listed beside it)"
    fi
    wheel="$WHEEL"
else
    slot="$CACHE/$slotname"
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
fi

"$PY" -m pip install "$wheel" "mmengine" "ftfy" "regex" "mmsegmentation==$MMSEG_VERSION"
"$PY" -c "import mmcv, mmseg, mmcv.ops; print('mmcv', mmcv.__version__, 'mmseg', mmseg.__version__, 'ops ok')"
