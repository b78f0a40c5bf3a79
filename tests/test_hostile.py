"""Hostile checks of issue 23 (items 1-3, 5-8): a store replaced under a live writer, two
recovers at once, exports to FIFOs / links / devices, a killed or stopped worker, a
decompression bomb in 16 bits, BPG temp folders after kill -9, a coding that never returns."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fakes_bench
from bench.cli import main

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
RUN = ["run", "--codecs", "quant", "--dataset", "pngs", "--metrics", "psnr", "-q"]
LINUX = Path("/proc/self/stat").exists()


@pytest.fixture()
def fakes(tmp_path, monkeypatch):
    """4 PNGs and the fake codec/dataset cards; results under tmp_path/out."""
    fakes_bench.use_fakes(tmp_path, monkeypatch, 4)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "refcache"))
    return tmp_path / "out"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "OMP_NUM_THREADS": "1", **extra}


def _statuses(store: Path) -> dict[str, int]:
    con = sqlite3.connect(store)
    try:
        return dict(con.execute("SELECT status, count(*) FROM rows GROUP BY status").fetchall())
    finally:
        con.close()


# -- item 3: export -o to a FIFO, a symlink, a device ------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_export_writes_through_a_fifo_and_a_symlink_and_refuses_dev_full(fakes, tmp_path, capsys):
    out = fakes
    assert main([*RUN, "--out", str(out), "--no-report"]) == 0
    ref = tmp_path / "ref.csv"
    assert main(["--out", str(out), "export", "-o", str(ref)]) == 0
    expected = ref.read_bytes()
    assert expected.count(b"\n") == 13  # header + 12 rows

    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))  # blocks until a writer closes
    reader.start()
    assert main(["--out", str(out), "export", "-o", str(fifo)]) == 0
    reader.join(30)
    assert not reader.is_alive() and got == [expected], "the FIFO's reader got the whole export"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO is still a FIFO"
    assert not list(tmp_path.glob(".pipe*")), "no temporary file beside the FIFO"

    # a FIFO with no reader: one line, exit 7, no hang
    capsys.readouterr()
    assert main(["--out", str(out), "export", "-o", str(fifo)]) == 7
    assert "no reader" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)

    target = tmp_path / "real" / "rows.csv"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert main(["--out", str(out), "export", "-o", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(target), "the symlink stays a symlink"
    assert target.read_bytes() == expected, "the file it points to got the export"

    if os.path.exists("/dev/full"):
        before = os.stat("/dev/full")
        capsys.readouterr()
        assert main(["--out", str(out), "export", "-o", "/dev/full"]) == 7
        err = capsys.readouterr().err
        assert "/dev/full" in err and "Traceback" not in err, err
        after = os.stat("/dev/full")
        assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    if os.access("/dev/null", os.W_OK):
        assert main(["--out", str(out), "export", "-o", "/dev/null"]) == 0
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
