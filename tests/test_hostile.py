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

import fakes_bench
import numpy as np
import pytest

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


# -- item 6: decompression bombs, every mode and depth ------------------------------------------
def _png(width: int, height: int, depth: int, colour: int, idat: bytes) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_pixel_count_is_checked_before_decoding_for_every_mode_and_depth(tmp_path, monkeypatch):
    import imagecodecs
    from PIL import Image

    from bench.datasets.base import read_rgb
    from bench.errors import ConfigError

    rgb48 = (np.arange(40 * 30 * 3, dtype=np.uint16) * 37).reshape(30, 40, 3)
    path16 = tmp_path / "rgb48.png"
    path16.write_bytes(imagecodecs.png_encode(rgb48))
    path8 = tmp_path / "rgb8.png"
    Image.fromarray((rgb48 >> 8).astype(np.uint8)).save(path8)
    pathI16 = tmp_path / "gray16.png"
    Image.fromarray(rgb48[..., 0].astype(np.uint16)).save(pathI16)
    for p in (path16, path8, pathI16):
        assert read_rgb(p).shape == (30, 40, 3)

    decoded: list[str] = []
    real_decode = imagecodecs.png_decode
    monkeypatch.setattr(imagecodecs, "png_decode", lambda *a, **k: decoded.append("png") or real_decode(*a, **k))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # limit 2 x 500 = 1000 pixels < 40 x 30
    for p in (path16, path8, pathI16):
        with pytest.raises(ConfigError, match="1,200 pixels, over the limit of 1,000"):
            read_rgb(p)
    assert decoded == [], "the 16-bit PNG was decoded before its size was checked"

    # a 20000 x 20000 RGB48 header over a few bytes of data: refused at once, nothing allocated
    monkeypatch.undo()
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(20000, 20000, 16, 2, b"x\x9c\x03\x00\x00\x00\x00\x01"))
    with pytest.raises(ConfigError, match="400,000,000 pixels"):
        read_rgb(bomb)


# -- item 7: BPG temp folders after SIGTERM / kill -9 ---------------------------------------------
FAKE_BPGENC = """#!/bin/sh
if [ "$1" = "-h" ]; then echo "BPG Image Encoder version 0.9.8-fake"; exit 1; fi
if [ -n "$BPG_HANG" ]; then echo $$ > "$BPG_HANG"; exec sleep 300; fi
eval out=\\${$(($# - 1))}
eval src=\\${$#}
cp "$src" "$out"
"""




@pytest.mark.skipif(not LINUX, reason="needs /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_bpg_temp_folders_of_a_killed_run_are_removed_when_the_next_run_starts(tmp_path, monkeypatch, sig):
    import tempfile

    from bench.codecs.bpg import BpgCodec

    tool = tmp_path / "bpgenc"
    tool.write_text(FAKE_BPGENC)
    tool.chmod(0o755)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    hang = tmp_path / "hang.pid"
    code = ("import numpy as np; from bench.codecs.bpg import BpgCodec; "
            f"BpgCodec(bpgenc={str(tool)!r}, bpgdec={str(tool)!r}).encode(np.zeros((8, 8, 3), np.uint8), 30)")
    proc = subprocess.Popen([sys.executable, "-c", code], env=_env(TMPDIR=str(tmp), BPG_HANG=str(hang)),
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not hang.exists():
            time.sleep(0.05)
        assert hang.exists(), "the encoder did not start"
        left = [p for p in tmp.rglob("*") if p.is_file()]
        assert any(p.name == "in.png" for p in left)
        os.kill(proc.pid, sig)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if hang.exists() and hang.read_text().strip() and fakes_bench.alive(int(hang.read_text())):
            os.kill(int(hang.read_text()), signal.SIGKILL)
    assert list(tmp.glob("bench-bpg-*")), "the killed run left its temp folder (as any kill -9 can)"

    # the next run (this process) removes it when it starts coding BPG, and leaves nothing itself
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    codec = BpgCodec(bpgenc=str(tool), bpgdec=str(tool))
    image = np.full((8, 8, 3), 7, np.uint8)
    assert codec.decode(codec.encode(image, 30).parts).shape == (8, 8, 3)
    assert [p.name for p in tmp.iterdir()] == [f"bench-bpg-pid{os.getpid()}"]
    assert not list((tmp / f"bench-bpg-pid{os.getpid()}").iterdir()), "each coding removes its own files"


# -- items 1 and 2: recover under a live writer, two recovers at once ------------------------------
def _rows_in(store: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
        try:
            return int(con.execute("SELECT count(*) FROM rows").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.mark.skipif(not LINUX, reason="needs flock (POSIX)")
def test_recover_refuses_while_a_run_writes_the_store(fakes, capsys):
    out = fakes
    store = out / "bench.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *RUN, "--workers", "1", "--no-report",
                             "--out", str(out)], env=_env(FAKE_CODEC_SLEEP="0.6"), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None and _rows_in(store) < 1:
            time.sleep(0.05)
        assert proc.poll() is None and _rows_in(store) >= 1, "the run did not start writing"
        capsys.readouterr()
        assert main(["--out", str(out), "recover", "--force"]) == 4
        err = capsys.readouterr().err
        assert "open in another process" in err and "Traceback" not in err, err
        assert proc.poll() is None, "the refusal came while the run was still writing"
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not list(out.glob("bench.sqlite.damaged-*")), "the live store was not moved away"
    assert _statuses(store) == {"ok": 12}
    con = sqlite3.connect(store)
    assert con.execute("SELECT status FROM runs").fetchall() == [("finished",)]
    con.close()
    # once the run is over, recover works
    assert main(["--out", str(out), "recover", "--force"]) == 0


def _damaged_store(out: Path) -> bytes:
    assert main([*RUN, "--out", str(out), "--no-report"]) == 0
    store = out / "bench.sqlite"
    size = store.stat().st_size
    with open(store, "r+b") as fh:
        fh.seek(size // 4096 // 2 * 4096)
        fh.write(b"\xff" * 4096)
    return store.read_bytes()


def test_two_recovers_in_one_second_keep_the_damaged_file_under_distinct_names(fakes, capsys):
    from bench.storage.recover import recover_in_place

    out = fakes
    original = _damaged_store(out)
    store = out / "bench.sqlite"
    kept = [recover_in_place(store)[1] for _ in range(3)]  # well within one second
    assert len(set(kept)) == 3 and all(k.exists() for k in kept)
    assert kept[0].read_bytes() == original, "the original damaged file is kept"
    assert main(["--out", str(out), "runs"]) == 0


@pytest.mark.skipif(not LINUX, reason="needs flock (POSIX)")
def test_two_concurrent_recovers_lose_no_damaged_file(fakes):
    import hashlib

    out = fakes
    original = hashlib.sha256(_damaged_store(out)).hexdigest()
    procs = [subprocess.Popen([sys.executable, "-m", "bench.cli", "--out", str(out), "recover", "--force"],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(120), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(rc for rc, _, _ in results)
    assert codes in ([0, 0], [0, 4]), results
    for rc, _, err in results:
        if rc == 4:
            assert "open in another process" in err and "Traceback" not in err, err
    kept = sorted(out.glob("bench.sqlite.damaged-*[0-9]"))
    assert len(kept) == codes.count(0), kept
    assert original in {hashlib.sha256(k.read_bytes()).hexdigest() for k in kept}, "the damaged original is kept"


# -- items 5 and 8: a dead, a stopped or a poisoned worker; a coding that never returns -------------
from fakes_bench import PngFolder, QuantCodec  # noqa: E402 (the fakes of items 5 and 8, after their comment)

_RELEASE = threading.Event()  # set at the end of a test: abandoned sleeping codings return


class SleepyCodec(QuantCodec):
    """Codes in the main process; hangs (until _RELEASE) on the image whose first pixel is ``first``."""

    name = "sleepy"
    parallel_safe = False

    def __init__(self, first: int = -1) -> None:
        self.first = int(first)

    def encode(self, image, rate, *, semantics=None):
        if int(image[0, 0, 0]) == self.first:
            _RELEASE.wait(120)
        return super().encode(image, rate)


class PoisonCodec(QuantCodec):
    """Runs in workers; kills its own process on one image × rate (first pixel ``first``, rate 16)."""

    name = "poison"

    def __init__(self, first: int = -1) -> None:
        self.first = int(first)

    def encode(self, image, rate, *, semantics=None):
        if int(image[0, 0, 0]) == self.first and int(rate) == 16:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().encode(image, rate)


def _first_pixel(data: Path) -> int:
    from bench.datasets.base import read_rgb

    return int(read_rgb(data / "img001.png")[0, 0, 0])


def _workers_of(pid: int) -> list[int]:
    """Codec worker processes of ``pid`` (not multiprocessing's resource tracker)."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(line.split()[1] for line in status.read_text().splitlines() if line.startswith("PPid:"))
            cmd = (status.parent / "cmdline").read_bytes()
        except (OSError, StopIteration):
            continue
        if ppid == str(pid) and b"resource_tracker" not in cmd:
            out.append(int(status.parent.name))
    return sorted(out)


def _wait_for_workers(proc: subprocess.Popen, n: int = 2, timeout: float = 90) -> list[int]:
    """The codec workers of the run ``proc`` once ``n`` of them are up (fails when they never are)."""
    deadline, workers = time.time() + timeout, []
    while time.time() < deadline and proc.poll() is None and len(workers) < n:
        workers = _workers_of(proc.pid)
        time.sleep(0.1)
    assert len(workers) >= n, "the pool did not start"
    return workers


@pytest.mark.skipif(not LINUX, reason="needs /proc (Linux)")
@pytest.mark.parametrize("start,sig", [("fork", signal.SIGKILL), ("spawn", signal.SIGKILL), ("fork", signal.SIGTERM)])
def test_a_killed_worker_loses_no_row(fakes, start, sig):
    out = fakes
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *RUN, "--workers", "2", "--no-report",
                             "--out", str(out)], env=_env(FAKE_CODEC_SLEEP="0.5", BENCH_START_METHOD=start),
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        workers = _wait_for_workers(proc)
        time.sleep(1.0)  # in the middle of a coding
        os.kill(workers[0], sig)
        stdout, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0 and "BrokenProcessPool" not in err and "Traceback" not in err, err
    assert "12 rows" in stdout
    store = out / "bench.sqlite"
    assert _statuses(store) == {"ok": 12}, "every row was coded, also those the dead worker had"
    con = sqlite3.connect(store)
    assert con.execute("SELECT status FROM runs").fetchall() == [("finished",)]
    con.close()


def test_a_worker_that_dies_twice_on_one_coding_records_it_as_failed(tmp_path):
    from bench import api

    data = tmp_path / "data"
    fakes_bench.write_pngs(data, 4)
    df = api.evaluate([PoisonCodec(_first_pixel(data))], PngFolder(str(data)), metrics="psnr", workers=2,
                      store=tmp_path / "out", use_cache=False)
    failed = df[df.status != "ok"]
    assert len(df) == 12 and len(failed) == 1, df[["image_id", "rate", "status", "error"]]
    assert failed.iloc[0].image_id == "img001" and failed.iloc[0].rate == "16"
    assert "died twice" in failed.iloc[0].error


def test_an_api_codec_that_hangs_in_the_main_process_times_out(tmp_path):
    from bench import api
    from bench.errors import ConfigError

    data = tmp_path / "data"
    fakes_bench.write_pngs(data, 3)
    _RELEASE.clear()
    try:
        t0 = time.time()
        df = api.evaluate([SleepyCodec(_first_pixel(data))], PngFolder(str(data)), metrics="psnr", rates=[16],
                          store=tmp_path / "out", timeout=1.5)
        assert time.time() - t0 < 60
    finally:
        _RELEASE.set()
    by_image = dict(zip(df.image_id, df.status))
    assert by_image == {"img000": "ok", "img001": "error", "img002": "ok"}, df
    assert "timeout of 1.5 s" in df[df.image_id == "img001"].error.iloc[0]
    for bad in (float("nan"), float("inf"), -1, "soon"):
        with pytest.raises(ConfigError, match="timeout"):
            api.evaluate([SleepyCodec()], PngFolder(str(data)), metrics="psnr", store=tmp_path / "o2", timeout=bad)
    assert not (tmp_path / "o2").exists(), "refused before a store was made"


def test_a_card_timeout_and_the_timeout_option(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    fakes_bench.write_pngs(data, 3)
    card = f"name: sleepy\nentry: test_hostile:SleepyCodec\nrates: [16]\ntimeout: 1\nparams: {{first: {_first_pixel(data)}}}\n"
    fakes_bench.use_fakes(tmp_path, monkeypatch, 3, extra={"codecs/sleepy.yaml": card})
    out = tmp_path / "out"
    run = ["run", "--codecs", "sleepy", "--dataset", "pngs", "--metrics", "psnr", "-q", "--no-report", "--out", str(out)]
    _RELEASE.clear()
    try:
        assert main(run) == 0  # the card's timeout: 1 s
    finally:
        _RELEASE.set()
    assert _statuses(out / "bench.sqlite") == {"ok": 2, "error": 1}
    capsys.readouterr()
    for bad in ("nan", "inf", "-3", "x"):
        assert main([*run, "--timeout", bad]) == 2
        err = capsys.readouterr().err
        assert "--timeout" in err and "Traceback" not in err, err


@pytest.mark.skipif(not LINUX, reason="needs /proc (Linux)")
def test_a_stopped_worker_times_out_and_the_run_finishes(fakes):
    out = fakes
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *RUN, "--workers", "2", "--no-report", "--timeout", "4",
                             "--out", str(out)], env=_env(FAKE_CODEC_SLEEP="0.5", BENCH_START_METHOD="fork"),
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped = None
    try:
        workers = _wait_for_workers(proc)
        time.sleep(1.0)
        stopped = workers[0]
        os.kill(stopped, signal.SIGSTOP)
        _, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0 and "Traceback" not in err, err
    statuses = _statuses(out / "bench.sqlite")
    assert sum(statuses.values()) == 12 and 1 <= statuses.get("error", 0) <= 2, statuses
    con = sqlite3.connect(out / "bench.sqlite")
    errors = [e for (e,) in con.execute("SELECT error FROM rows WHERE status = 'error'")]
    con.close()
    assert all("timeout of 4 s" in e for e in errors), errors
    assert not fakes_bench.alive(stopped), "the stopped worker was killed"
