#!/usr/bin/env bash
# Set up .venv with everything the harness and its tests need. Idempotent: a second run
# with unchanged requirements only checks a stamp and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${BENCH_VENV:-.venv}
TORCH_PAIR="torch==2.13.0 torchvision==0.28.0"
STAMP="$VENV/.bench-setup-stamp"
want=$(cat pyproject.toml scripts/setup.sh scripts/constraints.txt | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c "import bench, torch, torchvision" 2>/dev/null; then
  echo "setup: $VENV is up to date"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# pip byte-compiles what it installs: needed here, where PYTHONDONTWRITEBYTECODE=1 would make every
# process compile torch & co. from source again (--no-compile made the tests 1.7x slower)
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

# torch and torchvision come together from the index, in one call: the local CPU torch
# wheel has no matching torchvision (the PyPI one is a CUDA build that also runs on CPU).
if ! "$VENV/bin/python" -c "import torch, torchvision, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  "${pip[@]}" install --isolated $TORCH_PAIR
fi

# compressai 1.2.8 pins numpy<2 but works with numpy 2: install it without deps, then its deps.
"${pip[@]}" install -q -c scripts/constraints.txt --no-deps compressai==1.2.8
"${pip[@]}" install -q -c scripts/constraints.txt -e '.[test,metrics,learned,scale,heic,track,lightning,notebooks,fetch,dev]'

echo "$want" > "$STAMP"
echo "setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
