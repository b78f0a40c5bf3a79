"""scripts/build_mmcv.sh as scripts/test.sh calls it: a matching prebuilt wheel is verified and
installed, a mismatched one refused, and without one a single line says how to build it."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SLOT = f"mmcv-2.1.0-cp{sys.version_info.major}{sys.version_info.minor}-torch{torch.__version__.split('+')[0]}"
WHEEL_NAME = f"mmcv-2.1.0-cp{sys.version_info.major}{sys.version_info.minor}-cp311-linux_x86_64.whl"


def _fake_python(tmp_path: Path) -> tuple[Path, Path]:
    """A python that answers version/torch questions for real and logs (without running) pip and imports."""
    log = tmp_path / "calls.log"
    py = tmp_path / "python"
    py.write_text(f"""#!/usr/bin/env bash
if [ "$1" = -m ] || [[ "$2" == *"import mmcv"* ]]; then echo "$*" >> {log}; exit 0; fi
exec {sys.executable} "$@"
""")
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    return py, log


def _run(py: Path, wheels: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCH_WHEELS_DIR": str(wheels)}
    return subprocess.run(["bash", str(ROOT / "scripts" / "build_mmcv.sh"), *args, str(py)], env=env,
                          capture_output=True, text=True, timeout=120)


def _wheel(wheels: Path, slot: str, content: bytes, listed: bytes | None) -> Path:
    (wheels / slot).mkdir(parents=True)
    path = wheels / slot / WHEEL_NAME
    path.write_bytes(content)
    digest = hashlib.sha256(listed if listed is not None else content).hexdigest()
    (wheels / "README.md").write_text(f"| {slot}/{WHEEL_NAME} | mmcv | {digest} |\n")
    return path


def test_without_a_wheel_one_line_says_how_to_enable(tmp_path):
    py, log = _fake_python(tmp_path)
    out = _run(py, tmp_path / "wheels", "--prebuilt-only")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"mmseg tests skip: no prebuilt {SLOT} wheel; BENCH_WITH_MMSEG=1 bash "
                                       "scripts/test.sh builds mmcv (~15-25 min on 2 cores)"]
    assert not log.exists()  # nothing installed, nothing built


def test_matching_wheel_is_checked_and_installed(tmp_path):
    py, log = _fake_python(tmp_path)
    wheel = _wheel(tmp_path / "wheels", SLOT, b"wheel bytes", None)
    out = _run(py, tmp_path / "wheels", "--prebuilt-only")
    assert out.returncode == 0, out.stderr
    assert "using prebuilt" in out.stdout and "as listed in" in out.stdout
    calls = log.read_text().splitlines()
    assert calls[0] == f"-m pip install {wheel} mmengine ftfy regex mmsegmentation==1.2.2"
    assert "import mmcv, mmseg, mmcv.ops" in calls[1]


@pytest.mark.parametrize("case", ["wrong-sha256", "other-torch"])
def test_mismatched_wheel_is_not_used(tmp_path, case):
    py, log = _fake_python(tmp_path)
    if case == "wrong-sha256":
        wheel = _wheel(tmp_path / "wheels", SLOT, b"tampered", b"original")
        out = _run(py, tmp_path / "wheels", "--prebuilt-only")
        assert out.returncode == 3 and "sha256" in out.stderr and "not used" in out.stderr
    else:  # built for another torch: not picked up, and refused when named explicitly
        wheel = _wheel(tmp_path / "wheels", SLOT.rsplit("-torch", 1)[0] + "-torch2.0.0", b"x", None)
        out = _run(py, tmp_path / "wheels", "--prebuilt-only")
        assert out.returncode == 0 and out.stdout.startswith("mmseg tests skip")
        env = {**os.environ, "BENCH_WHEELS_DIR": str(tmp_path / "wheels")}
        out = subprocess.run(["bash", str(ROOT / "scripts" / "build_mmcv.sh"), str(py), str(wheel)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 3 and "not built for" in out.stderr
    assert not log.exists()


def test_shared_wheel_matches_this_environment(shared_dir):
    """The prebuilt wheel in ../shared/wheels is the one test.sh picks here, and its sha256 is listed."""
    wheels = sorted((shared_dir / "wheels" / SLOT).glob("mmcv-2.1.0-*.whl")) if (shared_dir / "wheels").is_dir() else []
    if not wheels:
        pytest.skip(f"no {SLOT} wheel in {shared_dir / 'wheels'}")
    listed = (shared_dir / "wheels" / "README.md").read_text()
    assert hashlib.sha256(wheels[0].read_bytes()).hexdigest() in listed


def test_test_script_uses_the_prebuilt_path_by_default():
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert "build_mmcv.sh --prebuilt-only" in script and 'BENCH_WITH_MMSEG:-0}" = 1' in script
