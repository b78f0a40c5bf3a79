"""Reliability: a damaged store is found and recovered, no process outlives a killed run or a
timed-out tool, report files are never half-written, read-only stores can be read."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fakes_bench
import numpy as np
import pytest

from bench.cli import main
from bench.errors import EXIT_CODES, CodecError, StoreDamagedError, StoreError
from bench.report.render import INDEX
from bench.storage.recover import recover
from bench.storage.store import Row, Store

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
RUN = ["run", "--codecs", "quant", "--dataset", "pngs", "--metrics", "psnr", "-q"]


@pytest.fixture()
def fakes(tmp_path, monkeypatch):
    """4 PNGs and the fake codec/dataset cards; results under tmp_path/out."""
    fakes_bench.use_fakes(tmp_path, monkeypatch, 4)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "refcache"))
    return tmp_path / "out"


def _damage(path: Path, first: float = 0.35, last: float = 0.65) -> None:
    """Overwrite the pages between ``first`` and ``last`` of the file (never page 1) with 0xFF."""
    size, page = path.stat().st_size, 4096
    start = max(page, int(size * first) // page * page)
    stop = max(start + page, int(size * last) // page * page)
    with open(path, "r+b") as fh:
        fh.seek(start)
        fh.write(b"\xff" * (stop - start))


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _psnr_by_key(store_path: Path) -> dict[tuple[str, str, str], float]:
    con = sqlite3.connect(store_path)
    try:
        return {(c, r, i): json.loads(m)["psnr"] for c, r, i, m in
                con.execute("SELECT codec, rate, image_id, metrics FROM rows WHERE status = 'ok'")}
    finally:
        con.close()


# -- damaged store -------------------------------------------------------------------------
def test_damaged_store_is_reported_by_every_command_and_recovered(fakes, capsys):
    out = fakes
    assert main([*RUN, "--out", str(out), "--no-report"]) == 0
    store_path = out / "bench.sqlite"
    before = _psnr_by_key(store_path)
    assert len(before) == 12
    _damage(store_path)
    capsys.readouterr()

    for argv in (["runs"], RUN, ["report"], ["export"]):
        rc = main([*argv, "--out", str(out)])
        line = _one_error_line(capsys.readouterr().err)
        assert rc == StoreError.exit_code == 4, (argv, line)
        assert "is damaged" in line and "bench --out" in line and "recover" in line, line

    assert main(["--out", str(out), "recover"]) == 0
    said = capsys.readouterr().out
    assert "recovered 1 runs" in said and "damaged file is kept" in said
    assert list(out.glob("bench.sqlite.damaged-*")), "the damaged file is kept"
    with Store(store_path, readonly=True) as store:
        assert store.problems() == []
        kept = store.count(store.runs()[0]["run_id"])
    # the same command resumes: only the lost rows are computed again, the values are the same
    assert main([*RUN, "--out", str(out)]) == 0
    assert _psnr_by_key(store_path) == before
    assert kept <= 12 and (out / "bench.sqlite").stat().st_size > 0
    assert main(["--out", str(out), "export"]) == 0


def test_recover_keeps_every_row_on_an_intact_page(tmp_path):
    src = tmp_path / "s.sqlite"
    with Store(src) as store:
        store.begin_run("r1", {"dataset": "x"}, {"tag": None})
        for i in range(400):
            store.put("r1", Row("jpeg", str(i % 4), f"img{i:04d}", bytes={"image": 100 + i}, bpp=0.01 * i,
                                metrics={"psnr": 30.0 + i / 100}, states={"psnr": {"se": np.arange(3.0) + i}}))
    pages = src.stat().st_size // 4096
    with open(src, "r+b") as fh:  # one page in the middle of the rows' leaves
        fh.seek(pages // 2 * 4096)
        fh.write(os.urandom(4096))
    with Store(src, readonly=True) as store:
        assert store.problems()
        with pytest.raises(StoreDamagedError, match="recover"):
            list(store.rows("r1"))
    result = recover(src, tmp_path / "r.sqlite")
    assert result.runs == 1 and result.unreadable_ranges >= 1
    with Store(tmp_path / "r.sqlite", readonly=True) as store:
        assert store.problems() == []
        rows = list(store.rows("r1"))
    # a 4 KiB page holds about a dozen of these rows: one damaged page loses about that many
    assert 400 - 40 <= len(rows) < 400 == result.rows + (400 - len(rows))
    for r in rows:  # every recovered row is exactly what was stored
        i = int(r.image_id[3:])
        assert r.rate == str(i % 4) and r.bytes == {"image": 100 + i} and r.metrics == {"psnr": 30.0 + i / 100}
        np.testing.assert_array_equal(r.states["psnr"]["se"], np.arange(3.0) + i)


def test_recover_keeps_metric_errors_and_reads_a_store_from_before_the_column(tmp_path):
    src = tmp_path / "s.sqlite"
    with Store(src) as store:
        store.begin_run("r1", {"dataset": "x"}, {"tag": None})
        store.put("r1", Row("jpeg", "1", "a", metrics={"psnr": 30.0}, metric_errors={"lpips": "boom"}))
        store.put("r1", Row("jpeg", "1", "b", metrics={"psnr": 31.0, "lpips": 0.2}))
    recover(src, tmp_path / "r.sqlite")
    with Store(tmp_path / "r.sqlite", readonly=True) as store:
        got = {r.image_id: r.metric_errors for r in store.rows("r1")}
        assert got == {"a": {"lpips": "boom"}, "b": {}}
        assert store.done_keys("r1", include_errors=False) == {("jpeg", "1", "b")}
    con = sqlite3.connect(src)  # the same store as written before metric_errors existed
    con.execute("ALTER TABLE rows DROP COLUMN metric_errors")
    con.commit()
    con.close()
    result = recover(src, tmp_path / "old.sqlite")
    assert (result.runs, result.rows, result.lost_rows) == (1, 2, 0)
    with Store(tmp_path / "old.sqlite", readonly=True) as store:
        assert {r.image_id: r.metrics["psnr"] for r in store.rows("r1")} == {"a": 30.0, "b": 31.0}


def test_recover_dest_leaves_the_store_alone_and_a_sound_store_is_not_copied(tmp_path, capsys):
    out = tmp_path / "out"
    with Store(out / "bench.sqlite") as store:
        store.begin_run("r1", {"dataset": "x"}, {"tag": None})
        for i in range(300):
            store.put("r1", Row("jpeg", "50", f"img{i:04d}", metrics={"psnr": float(i)}))
    assert main(["recover", "--out", str(out)]) == 0
    assert "nothing to recover" in capsys.readouterr().out
    _damage(out / "bench.sqlite", 0.5, 0.5)
    digest = hashlib.sha256((out / "bench.sqlite").read_bytes()).hexdigest()
    copy = tmp_path / "copy.sqlite"
    assert main(["recover", "--out", str(out), "--dest", str(copy)]) == 0
    assert "recovered 1 runs" in capsys.readouterr().out
    assert hashlib.sha256((out / "bench.sqlite").read_bytes()).hexdigest() == digest
    with Store(copy, readonly=True) as store:
        assert store.problems() == [] and 200 <= store.count("r1") < 300  # one page (~60 rows) lost


def test_every_sqlite_error_is_a_store_error(tmp_path):
    (tmp_path / "garbage.sqlite").write_bytes(b"not a database at all" * 300)
    with pytest.raises(StoreError, match="not an SQLite file, not a bench run store") as caught:
        Store(tmp_path / "garbage.sqlite")  # nothing to recover: not advised (issue 23, item 17)
    assert not isinstance(caught.value, StoreDamagedError) and "recover" not in str(caught.value)
    with pytest.raises(StoreError, match="no run store"):
        Store(tmp_path / "missing.sqlite", readonly=True)
    with Store(tmp_path / "ok.sqlite") as store:
        store.begin_run("r", {}, {})
    with Store(tmp_path / "ok.sqlite", readonly=True) as store:
        with pytest.raises(StoreError, match="read-only"):
            store.put("r", Row("jpeg", "1", "a"))


# -- processes -----------------------------------------------------------------------------
def _children(pid: int) -> set[int]:
    out = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            out.add(int(status.parent.name))
    return out




def _session(sid: int) -> set[int]:
    """Live processes of session ``sid``."""
    out = set()
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            out.add(int(stat_file.parent.name))
    return out


def _survivors_of_kill_9(proc: subprocess.Popen, pids: set[int]) -> list[int]:
    """kill -9 ``proc``, then the processes of ``pids`` still alive 5 s later."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(fakes_bench.alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if fakes_bench.alive(p)]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_kill_9_of_a_run_leaves_no_worker_and_no_resource_tracker(fakes, tmp_path, start):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "FAKE_CODEC_SLEEP": "0.5",
           "OMP_NUM_THREADS": "1", "BENCH_START_METHOD": start}
    expected = 3 if start == "spawn" else 2  # spawned pools also start multiprocessing's resource tracker
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *RUN, "--workers", "2", "--out", str(fakes)],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, children = time.time() + 90, set()
        while time.time() < deadline and proc.poll() is None:
            children = _children(proc.pid)
            if len(children) >= expected:  # two workers (and the resource tracker)
                break
            time.sleep(0.2)
        assert proc.poll() is None and len(children) >= expected, f"the pool did not start: {children}"
        assert not _survivors_of_kill_9(proc, children), "processes of the killed run are still alive"
        assert not _session(proc.pid), "a process of the killed run's session is still alive"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.stderr.close()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_ctrl_c_of_a_run_with_workers_prints_one_line_and_stops_them(fakes, start):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "FAKE_CODEC_SLEEP": "0.5",
           "OMP_NUM_THREADS": "1", "BENCH_START_METHOD": start}
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *RUN, "--workers", "2", "--out", str(fakes)],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline, children = time.time() + 90, set()
        while time.time() < deadline and proc.poll() is None and len(children) < 2:
            children = _children(proc.pid)
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "Traceback" not in err, err
        assert err.strip().splitlines()[-1].startswith("interrupted: finished rows are stored"), err
        deadline = time.time() + 5
        while time.time() < deadline and _session(proc.pid):
            time.sleep(0.1)
        assert not _session(proc.pid), "a worker outlived the interrupted run"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


HANGING_BPGENC = """#!/bin/sh
if [ "$1" = "-h" ]; then echo "BPG Image Encoder version 0.9.8-hang"; exit 1; fi
sleep 300 &
echo $! >> "$HANG_PIDS"
echo $$ >> "$HANG_PIDS"
wait
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists() or not shutil.which("sh"), reason="needs /proc and sh")
def test_bpg_timeout_kills_the_tool_and_its_children(tmp_path, monkeypatch):
    from bench.codecs.bpg import BpgCodec

    tool = tmp_path / "bpgenc"
    tool.write_text(HANGING_BPGENC)
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    pids = tmp_path / "pids"
    monkeypatch.setenv("HANG_PIDS", str(pids))
    codec = BpgCodec(bpgenc=str(tool), bpgdec=str(tool), timeout_s=1.0)
    assert codec.version == "bpg-0.9.8-hang"
    t0 = time.time()
    started: list[int] = []
    try:
        with pytest.raises(CodecError, match="timed out"):
            codec.encode(np.zeros((16, 16, 3), np.uint8), 30)
        assert time.time() - t0 < 10
        started = [int(p) for p in pids.read_text().split()]
        assert len(started) == 2  # the wrapper and its child
        deadline = time.time() + 3
        while time.time() < deadline and any(fakes_bench.alive(p) for p in started):
            time.sleep(0.05)
        assert not [p for p in started if fakes_bench.alive(p)], "the wrapper's child outlived the timeout"
    finally:  # never leave a stray sleep behind, even when the test fails
        for pid in started or ([int(p) for p in pids.read_text().split()] if pids.exists() else []):
            if fakes_bench.alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_tool_run_by_the_main_process_dies_with_it_on_kill_9(tmp_path):
    """Small runs code inline: a tool they started (bpgenc, cjxl, …) must not outlive kill -9."""
    code = ("import sys; from bench.runtime.procs import run_tool; "
            "run_tool([sys.executable, '-c', 'import time; time.sleep(300)'], 600)")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            start_new_session=True)
    tools: set[int] = set()
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not tools:
            tools = _children(proc.pid)
            time.sleep(0.1)
        assert tools, "the tool did not start"
        time.sleep(0.3)  # past exec
        assert not _survivors_of_kill_9(proc, tools), "the tool outlived its killed parent"
    finally:
        for pid in tools:
            if fakes_bench.alive(pid):
                os.kill(pid, signal.SIGKILL)


# -- report files ----------------------------------------------------------------------------
def test_interrupted_report_leaves_no_empty_or_partial_file(fakes, monkeypatch, capsys):
    from matplotlib.figure import Figure

    assert main([*RUN, "--out", str(fakes)]) == 0
    report_dir = next(p for p in fakes.iterdir() if p.is_dir() and p.name.startswith("pngs-"))
    (report_dir / INDEX).unlink()  # else the unchanged curves are not drawn again
    before = {p.name: p.read_bytes() for p in report_dir.iterdir()}
    assert "rd_psnr.png" in before

    def interrupted_savefig(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")  # a writer interrupted half-way
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted_savefig)
    fresh = fakes / "fresh"
    for dest in (report_dir, fresh):
        assert main(["--out", str(fakes), "report", "--dest", str(dest)]) == 130
        assert all(p.stat().st_size > 0 for p in dest.iterdir())
        assert not [p.name for p in dest.iterdir() if p.name.startswith(".")], "temporary files left behind"
        assert not (dest / INDEX).exists()  # no figure recorded as saved
    assert {p.name: p.read_bytes() for p in report_dir.iterdir()} == before  # the old report is intact
    assert not list(fresh.glob("rd_*")), "no curve file of the interrupted report"


def test_failures_csv_is_removed_once_every_row_is_ok(tmp_path, monkeypatch):
    data = fakes_bench.use_fakes(tmp_path, monkeypatch, 2)
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(data / "white.png")  # crashes the codec
    out = tmp_path / "out"
    argv = ["run", "--codecs", "crashy", "--dataset", "pngs", "--metrics", "psnr", "-q", "--out", str(out)]
    assert main(argv) == 0
    report_dir = next(p for p in out.iterdir() if p.is_dir() and p.name.startswith("pngs-"))
    assert "white" in (report_dir / "failures.csv").read_text()
    monkeypatch.setattr(fakes_bench.CrashCodec, "encode", fakes_bench.QuantCodec.encode)  # the crash is fixed
    assert main([*argv, "--retry-failed"]) == 0
    assert not (report_dir / "failures.csv").exists()
    assert (report_dir / "summary.md").stat().st_size > 0


# -- read-only store -------------------------------------------------------------------------
def _as_unprivileged() -> list[str] | None:
    """Command prefix that drops root (root ignores file permissions), [] when not root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"] if setpriv else None


def test_read_only_commands_work_on_a_chmod_444_store(monkeypatch, capsys):
    prefix = _as_unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:  # reachable by the unprivileged user
        base = Path(tmp)
        base.chmod(0o755)
        fakes_bench.use_fakes(base, monkeypatch, 2)
        monkeypatch.setenv("BENCH_CACHE_DIR", str(base / "refcache"))
        out = base / "out"
        for tag in ("a", "b"):
            assert main([*RUN, "--out", str(out), "--no-report", "--tag", tag]) == 0
        store = out / "bench.sqlite"
        with Store(store, readonly=True) as s:
            run_a, run_b = [r["run_id"] for r in s.runs()]
        for leftover in (Path(f"{store}-wal"), Path(f"{store}-shm")):
            leftover.unlink(missing_ok=True)
        digest = hashlib.sha256(store.read_bytes()).hexdigest()
        writable = base / "elsewhere"
        writable.mkdir(mode=0o777)
        writable.chmod(0o777)
        store.chmod(0o444)
        out.chmod(0o555)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "OMP_NUM_THREADS": "1",
               "MPLCONFIGDIR": str(writable / "mpl"), "HOME": str(writable)}

        commands = [["runs"],
                    ["report", run_a, "--dest", str(writable / "rep")],
                    ["report", run_a, "--html", "--no-crops", "--dest", str(writable / "html")],
                    ["export", run_b, "-o", str(writable / "rows.csv")],
                    ["compare", run_a, run_b, "--csv", str(writable / "cmp")],
                    RUN]  # the last one writes rows: refused
        script = (  # one interpreter for all commands (each startup costs seconds)
            "import contextlib, io, json, sys\nfrom bench.cli import main\nresults = []\n"
            "for argv in json.loads(sys.argv[1]):\n"
            "    out, err = io.StringIO(), io.StringIO()\n"
            "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
            "        rc = main(['--out', sys.argv[2], *argv])\n"
            "    results.append([rc, out.getvalue(), err.getvalue()])\n"
            "print(json.dumps(results))\n")
        try:
            done = subprocess.run([*prefix, sys.executable, "-c", script, json.dumps(commands), str(out)],
                                  env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            results = json.loads(done.stdout.strip().splitlines()[-1])
            for argv, (rc, _said, err) in zip(commands[:-1], results):
                assert rc == 0, (argv, err)
            assert run_a in results[0][1] and "quant@b" in results[0][1]
            assert (writable / "rep" / "summary.md").stat().st_size > 0
            assert (writable / "html" / "report.html").stat().st_size > 0
            assert (writable / "rows.csv").read_text().count("\n") == 1 + 2 * 3
            assert (writable / "cmp" / "compare_bd.csv").is_file()
            rc, _, err = results[-1]  # writing rows needs a writable store
            assert rc in (4, 7), err
            _one_error_line(err)
        finally:
            out.chmod(0o755)
            store.chmod(0o644)
        assert hashlib.sha256(store.read_bytes()).hexdigest() == digest  # not one byte written


def test_exit_code_table_is_in_help_and_readme(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    readme = (ROOT / "README.md").read_text()
    from bench.analysis.compare import REGRESSION_EXIT

    assert REGRESSION_EXIT in EXIT_CODES
    for code, meaning in EXIT_CODES.items():
        assert f"{code:>3}  {meaning}" in text
        assert f"| {code} |" in readme
    assert max(map(len, text.splitlines())) <= 100, max(text.splitlines(), key=len)


def test_atomic_write_replaces_whole_files_with_the_usual_mode(tmp_path):
    from bench.errors import OutputError
    from bench.storage.atomic import write_text, write_with

    target = tmp_path / "t.md"
    write_text(target, "old")
    with pytest.raises(ZeroDivisionError):
        write_with(target, lambda tmp: (tmp.write_text("half"), 1 / 0))
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.md"]
    write_text(target, "new")
    mask = os.umask(0)
    os.umask(mask)
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    with pytest.raises(OutputError, match="is a folder"):
        write_text(tmp_path, "x")
