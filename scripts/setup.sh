#!/usr/bin/env bash
# Set up .venv with everything the harness and its tests need. Idempotent: a second run
# with unchanged requirements only checks a stamp and returns in about a second.
#   BENCH_INSTALLER=pip  install with pip alone (default: uv, falling back to pip if uv fails,
#                        e.g. behind a pip-only mirror; uv reads UV_INDEX_URL, not pip's config)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${BENCH_VENV:-.venv}
TORCH_PAIR=(torch==2.13.0 torchvision==0.28.0)
EXTRAS='.[test,metrics,learned,scale,heic,track,lightning,notebooks,fetch,dev]'
UV_VERSION=0.13.10
STAMP="$VENV/.bench-setup-stamp"
want=$(cat pyproject.toml scripts/setup.sh scripts/constraints.txt | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c "import bench, torch, torchvision" 2>/dev/null; then
  echo "setup: $VENV is up to date"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
have_torch() {
  "$VENV/bin/python" -c "import torch, torchvision, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null
}

# Installs byte-compile what they install: needed here, where PYTHONDONTWRITEBYTECODE=1 would make
# every process compile torch & co. from source again (skipping it made the tests 1.7x slower).
# torch and torchvision come together from the index, in one call: the local CPU torch wheel has no
# matching torchvision (the PyPI one is a CUDA build that also runs on CPU). compressai 1.2.8 pins
# numpy<2 but works with numpy 2: it is installed without deps, its deps come with the extras.
with_uv() {
  local uv=("$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --compile-bytecode)
  "${pip[@]}" install -q --isolated "uv==$UV_VERSION" || return 1
  have_torch || "${uv[@]}" "${TORCH_PAIR[@]}" || return 1
  "${uv[@]}" -c scripts/constraints.txt --no-deps compressai==1.2.8 || return 1
  "${uv[@]}" -c scripts/constraints.txt -e "$EXTRAS"
}
with_pip() {
  have_torch || "${pip[@]}" install --isolated "${TORCH_PAIR[@]}"
  "${pip[@]}" install -q -c scripts/constraints.txt --no-deps compressai==1.2.8
  "${pip[@]}" install -q -c scripts/constraints.txt -e "$EXTRAS"
}
# uv installs the same in ~1 min where pip takes ~4 (parallel downloads and compilation)
if [ "${BENCH_INSTALLER:-uv}" = pip ]; then
  with_pip
elif ! with_uv; then
  echo "setup: uv failed; installing with pip instead (slower)" >&2
  with_pip
fi

echo "$want" > "$STAMP"
echo "setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
