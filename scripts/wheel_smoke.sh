#!/usr/bin/env bash
# Build the wheel and use it from a fresh virtualenv that cannot see the checkout or an editable bench:
# `bench list codecs` (the cards ship as package data) and a one-image demo run. ~30-60 s.
#   PYTHON=...  the interpreter whose site-packages holds the dependencies (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PY" -m build --wheel --no-isolation --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
rm -rf build  # setuptools' staging folder in the checkout
"$PY" -m venv --without-pip "$work/venv"  # --system-site-packages off
deps="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
site="$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# the dependencies only: a plain path line in a .pth does not run that folder's own .pth files,
# so an editable bench installed there (its finder hook) stays invisible
echo "$deps" >"$site/_deps.pth"
"$PY" -m pip --python "$work/venv/bin/python" install -q --no-deps --no-index "$work"/dist/*.whl
cd "$work"  # away from the checkout
export -n PYTHONPATH BENCH_CARD_PATH 2>/dev/null || true
unset PYTHONPATH BENCH_CARD_PATH
venv/bin/python -c 'import bench, sys; f = bench.__file__; assert f.startswith(sys.prefix), f; print("bench from", f)'
venv/bin/bench list codecs >list.txt
grep -q "^jpeg " list.txt || { echo "wheel: jpeg card missing from bench list codecs"; cat list.txt; exit 1; }
echo "bench list codecs: $(grep -c '^[a-z]' list.txt) codecs"
venv/bin/bench --out "$work/results" run --codecs jpeg --dataset demo --limit 1 --metrics psnr --rates jpeg=50 >run.txt 2>&1 \
  || { cat run.txt; exit 1; }
tail -n 3 run.txt
echo "wheel smoke test: ok"
