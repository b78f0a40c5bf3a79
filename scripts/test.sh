#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite.
#   BENCH_SKIP_MMSEG=1  skip installing the optional mmcv+mmseg backend (its tests then skip)
#   BENCH_WITH_MMSEG=1  build mmcv from source when no prebuilt wheel matches (~15-25 min on 2 cores)
#   BENCH_SKIP_BROWSER=1  do not apt-install chromium (the HTML browser test then skips)
#   BENCH_SKIP_WHEEL=1  skip building the wheel and running it from a fresh virtualenv (~1 min)
set -euo pipefail
cd "$(dirname "$0")/.."
# the project's test build of BPG 0.9.8 (../shared/tools/bpg) when present, so real-BPG tests run; users bring their own
if [ -d ../shared/tools/bpg ]; then export PATH="$(cd ../shared/tools/bpg && pwd):$PATH"; fi
bash scripts/setup.sh
if [ "${BENCH_SKIP_MMSEG:-0}" != 1 ] && ! .venv/bin/python -c "import mmcv.ops, mmseg" 2>/dev/null; then
  # the optional mmcv+mmseg backend: a matching prebuilt wheel (../shared/wheels, sha256-checked) installs
  # in seconds; without one the mmseg tests skip, unless BENCH_WITH_MMSEG=1 compiles mmcv (~15-25 min on
  # 2 cores, bounded by BENCH_MMCV_BUILD_TIMEOUT seconds) into ~/.cache/semcodec-bench/wheels
  if [ "${BENCH_WITH_MMSEG:-0}" = 1 ]; then
    MAX_JOBS="${MAX_JOBS:-$(nproc)}" NICE="${NICE:-0}" timeout "${BENCH_MMCV_BUILD_TIMEOUT:-3600}" \
      bash scripts/build_mmcv.sh .venv/bin/python >/tmp/bench-build-mmcv.log 2>&1 \
      || echo "mmcv/mmseg setup failed (see /tmp/bench-build-mmcv.log): mmseg tests will skip"
  else
    bash scripts/build_mmcv.sh --prebuilt-only .venv/bin/python >/tmp/bench-build-mmcv.log 2>&1 \
      || echo "prebuilt mmcv wheel not installed (see /tmp/bench-build-mmcv.log): mmseg tests will skip"
    grep "^mmseg tests skip" /tmp/bench-build-mmcv.log || true  # the one line saying how to enable them
  fi
fi
if [ "${BENCH_SKIP_BROWSER:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1 \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/tmp/bench-chromium.log 2>&1 \
    || echo "chromium not installed (see /tmp/bench-chromium.log): the HTML browser test will skip"
fi
# lint first (a second); then the type check and the wheel in a fresh virtualenv run beside the
# tests, which leave cores idle while they wait on the processes they start (kill -9, timeouts,
# servers); each check's output is printed after the tests, and any failure fails the command
.venv/bin/ruff check bench tests scripts benchmarks setup.py
checks="$(mktemp -d)"
trap 'rm -rf "$checks"' EXIT
(.venv/bin/mypy >"$checks/mypy.log" 2>&1; echo $? >"$checks/mypy.rc") &
if [ "${BENCH_SKIP_WHEEL:-0}" != 1 ]; then
  (PYTHON=.venv/bin/python bash scripts/wheel_smoke.sh >"$checks/wheel.log" 2>&1; echo $? >"$checks/wheel.rc") &
fi
# two pytest workers (one per core here), whole files to one worker; BENCH_TEST_WORKERS=0 runs
# them in this process
status=0
.venv/bin/python -m pytest -q -ra -n "${BENCH_TEST_WORKERS:-2}" --dist loadfile "$@" || status=$?
wait
for check in mypy wheel; do
  [ -f "$checks/$check.rc" ] || continue
  echo "--- $check"; tail -n 20 "$checks/$check.log"
  [ "$(cat "$checks/$check.rc")" = 0 ] || { echo "$check failed"; status=1; }
done
exit "$status"
