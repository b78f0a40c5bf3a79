"""Trust under attack (issue 23, items 9-14 and 16-18): the gate never trusts an unfinished
run or a handful of images, numbers are finite, byte parts are bytes, rows carry what they
coded, hostile store files, images, tags and signals end as one line with the right code."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import fakes_bench
import numpy as np
import pytest

from bench.analysis.compare import compare
from bench.analysis.stats import Bootstrap
from bench.cli import main
from bench.errors import ConfigError, IncompleteRunError, TooFewImagesError
from bench.execution.runner import RunConfig, execute
from bench.storage.store import Store

QUANT = "name: quant\nentry: test_compare:TunableQuant\nrates: [32, 16, 8, 4]\n"


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """6 PNGs, the quant codec with a ``noise`` setting (test_compare.TunableQuant)."""
    fakes_bench.use_fakes(tmp_path, monkeypatch, 6, {"codecs/quant.yaml": QUANT})
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "refcache"))
    return tmp_path


def _execute(store: Store, **kw: Any) -> str:
    cfg: dict[str, Any] = dict(dataset="pngs", codecs=["quant"], metrics=["psnr"], workers=1)
    cfg.update(kw)
    return execute(RunConfig(**cfg), store, progress=False)


def _kill_after(path: Path, run_id: str, keep: int) -> list[str]:
    """Make ``run_id`` look killed after its first ``keep`` images: later rows gone, status running."""
    con = sqlite3.connect(path)
    with con:
        ids = sorted({i for (i,) in con.execute("SELECT image_id FROM rows WHERE run_id = ?", (run_id,))})
        con.executemany("DELETE FROM rows WHERE run_id = ? AND image_id = ?", [(run_id, i) for i in ids[keep:]])
        con.execute("UPDATE runs SET status = 'running' WHERE run_id = ?", (run_id,))
    con.close()
    return ids[:keep]


def _main(argv: list[str]) -> int:
    """``main`` with argparse's usage errors (SystemExit) as their exit code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# -- 9: compare on incomplete runs ------------------------------------------------------------
def test_compare_refuses_an_unfinished_run_and_compares_only_common_images_when_allowed(env, capsys):
    db = env / "bench.sqlite"
    with Store(db) as store:
        good = _execute(store, tag="good")
        bad = _execute(store, tag="bad", codec_params={"quant": {"noise": 12}})
        psnr = {(r.rate, r.image_id): r.metrics["psnr"] for r in store.rows(good)}
    kept = _kill_after(db, bad, 2)
    capsys.readouterr()
    assert main(["--out", str(env), "compare", good, bad]) == IncompleteRunError.exit_code == 5
    line = _one_error(capsys.readouterr().err)
    assert f"run {bad} did not finish every image" in line and "2 compared" in line and "--allow-partial" in line
    with Store(db, readonly=True) as store, pytest.raises(IncompleteRunError):
        compare(store, good, bad)
    # allowed: only the 2 images both finished, said so; the point values are means over those 2
    assert main(["--out", str(env), "compare", good, bad, "--allow-partial"]) == 6
    out = capsys.readouterr().out
    assert "images: 2 compared, only those both runs finished (run A finished 6 of 6, run B 2 of 6)" in out
    with Store(db, readonly=True) as store:
        result = compare(store, good, bad, allow_partial=True)
    assert result.images == 2 and not result.complete
    p = result.points.set_index("rate").loc["16"]
    assert p["value_a"] == pytest.approx(np.mean([psnr[("16", i)] for i in kept]))
    # complete runs say how many images were compared
    assert main(["--out", str(env), "compare", good, "--anchor", "quant", "--test",
                 "quant"]) == 0
    assert "images: 6 compared (every image of both runs)" in capsys.readouterr().out


# -- 10: minimum N for --gate significant ----------------------------------------------------
def test_significant_gate_needs_a_minimum_number_of_images_and_prints_n(env, capsys):
    db = env / "bench.sqlite"
    with Store(db) as store:
        good = _execute(store, tag="good")
        bad = _execute(store, tag="bad", codec_params={"quant": {"noise": 12}})
        result = compare(store, good, bad, ci=Bootstrap(resamples=200))
    assert result.too_few_images == ["quant: psnr interval from N=6 images (minimum 10)"]
    with pytest.raises(TooFewImagesError, match="N=6 images"):
        result.gate("significant")
    capsys.readouterr()
    argv = ["--out", str(env), "compare", good, bad, "--gate", "significant", "--ci-resamples", "200"]
    assert main(argv) == TooFewImagesError.exit_code == 5
    captured = capsys.readouterr()
    assert "too few images to judge significance" in _one_error(captured.err)
    assert "TOO FEW IMAGES" in captured.out
    # the minimum is configurable; N is printed beside every interval
    assert main([*argv, "--min-images", "6"]) == 6
    out = capsys.readouterr().out
    assert "N=6 images" in out and "N" in out.split("Bjøntegaard intervals")[1].splitlines()[1].split()  # its N column
    assert main([*argv, "--min-images", "1"]) == 2


# -- 11: non-finite tolerances ---------------------------------------------------------------
@pytest.mark.parametrize("extra", [["--tolerance", "nan"], ["--tolerance", "inf"], ["--tolerance=-inf"],
                                   ["--delta-tolerance", "psnr=nan"], ["--delta-tolerance", "psnr=inf"]])
def test_non_finite_tolerances_are_refused(env, capsys, extra):
    with Store(env / "bench.sqlite") as store:
        good = _execute(store, tag="good")
        bad = _execute(store, tag="bad", codec_params={"quant": {"noise": 12}})
    capsys.readouterr()
    assert _main(["--out", str(env), "compare", good, bad, *extra]) == 2
    assert "finite" in _one_error(capsys.readouterr().err)
    with Store(env / "bench.sqlite", readonly=True) as store, pytest.raises(ConfigError, match="finite"):
        compare(store, good, bad, tolerance=float("nan"))
    assert _main(["--out", str(env), "sweep", "--codec", "quant", "--checkpoints", str(env / "none*"),
                 "--dataset", "pngs", "--tolerance", "inf"]) == 2


# -- 12: NaN wherever a number is parsed; a run where every row failed -------------------------
class AlwaysFails(fakes_bench.QuantCodec):
    name = "broken"

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Any = None) -> Any:
        raise RuntimeError("simulated: the model is not loaded")


class PartsOfType(fakes_bench.QuantCodec):
    """Returns its image part as ``kind``: bytes (default), array, str, memoryview16."""

    name = "parts"

    def __init__(self, kind: str = "bytes") -> None:
        self.kind = kind

    def params(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Any = None) -> Any:
        enc = super().encode(image, rate)
        data = enc.parts["image"]
        if self.kind == "array":
            enc.parts["image"] = np.frombuffer(data + b"\0" * (len(data) % 2), np.uint16)
        elif self.kind == "str":
            enc.parts["image"] = data.decode("latin-1")
        elif self.kind == "memoryview16":
            enc.parts["image"] = memoryview(np.frombuffer(data + b"\0" * (len(data) % 2), np.uint16))
        return enc

    def decode(self, parts: Any) -> np.ndarray:
        data = parts["image"]
        data = data.encode("latin-1") if isinstance(data, str) else bytes(data)
        return super().decode({"image": data})


@pytest.mark.parametrize("rates", [["jpeg2000=nan"], ["jpegxl=nan"], ["jpeg-matched=nan"], ["jpeg2000=inf"],
                                   ["nan"]])
def test_nan_rates_are_refused_before_a_store_is_made(env, capsys, rates):
    codec = rates[0].partition("=")[0] if "=" in rates[0] else "jpeg2000"
    argv = ["--out", str(env / "out"), "run", "--codecs", codec, "--dataset", "pngs", "-q"]
    assert _main([*argv, *[x for r in rates for x in ("--rates", r)]]) == 2
    assert "finite" in _one_error(capsys.readouterr().err)
    assert not (env / "out" / "bench.sqlite").exists()
    assert _main([*argv, "--rates", "jpeg2000=0.5", "--param", "jpeg2000.x=.nan"]) == 2


def test_a_run_where_every_row_failed_exits_8_and_keeps_its_rows(env, capsys):
    (env / "cards" / "codecs" / "broken.yaml").write_text("name: broken\nentry: test_trust:AlwaysFails\n")
    from bench.registry import catalog

    catalog.reset()
    out = env / "out"
    assert main(["--out", str(out), "run", "--codecs", "broken", "--dataset", "pngs", "--metrics", "psnr",
                 "-q", "--workers", "1"]) == 8
    line = _one_error(capsys.readouterr().err)
    assert "every one of its 18 rows failed" in line and "simulated: the model is not loaded" in line
    with Store(out / "bench.sqlite", readonly=True) as store:
        assert store.count(store.run("latest")["run_id"]) == 18
    # one working codec beside it: exit 0
    assert main(["--out", str(out), "run", "--codecs", "broken,quant", "--dataset", "pngs", "--metrics", "psnr",
                 "-q", "--workers", "1", "--no-report"]) == 0


# -- 13: encoded parts must be bytes ---------------------------------------------------------
def test_parts_that_are_not_bytes_fail_the_row_and_memoryviews_count_bytes(env):
    from bench.codecs.base import part_sizes

    with Store(env / "bench.sqlite") as store:
        rows = {}
        for kind in ("bytes", "array", "str", "memoryview16"):
            run = _execute(store, codecs=[PartsOfType(kind)], tag=kind, limit=1)
            rows[kind] = {r.rate: r for r in store.rows(run)}
    for kind in ("array", "str"):
        for r in rows[kind].values():
            assert r.status == "error" and "is a" in r.error and "not bytes/bytearray/memoryview" in r.error
    # a uint16 memoryview: its nbytes (not its element count) are counted, like the bytes themselves
    for rate, r in rows["memoryview16"].items():
        assert r.status == "ok"
        assert r.bytes["image"] == rows["bytes"][rate].bytes["image"] + rows["bytes"][rate].bytes["image"] % 2
    assert part_sizes({"a": b"abc", "b": bytearray(2), "c": memoryview(np.zeros(5, np.float64))}) == \
        {"a": 3, "b": 2, "c": 40}


# -- 14: a row carries what it coded; API rates and typed params checked ------------------------
class Replacer(fakes_bench.QuantCodec):
    """Replaces ``target`` with a flat grey image while coding the first image (once)."""

    name = "replacer"

    def __init__(self, target: str = "") -> None:
        self.target = target

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Any = None) -> Any:
        path = Path(self.target)
        if path.exists() and not path.with_suffix(".done").exists():
            from PIL import Image

            Image.fromarray(np.full(image.shape, 128, np.uint8)).save(path)
            path.with_suffix(".done").write_text("")
        return super().encode(image, rate)


def test_a_row_carries_the_hash_of_the_pixels_it_coded(env):
    from bench.datasets.base import image_sha256, read_rgb

    last = sorted((env / "data").glob("*.png"))[-1]
    old = image_sha256(read_rgb(last))
    with Store(env / "bench.sqlite") as store:
        run = _execute(store, codecs=[Replacer(str(last))])
        rows = list(store.rows(run))
    new = image_sha256(read_rgb(last))
    assert new != old
    got = {r.image_id: r.notes["image_sha256"] for r in rows}
    assert got[last.stem] == new  # not the hash the run started with
    assert len({v for k, v in got.items() if k != last.stem}) == 5


def test_api_rates_for_unknown_codecs_and_mistyped_params_are_refused(env, capsys):
    from bench import api
    from bench.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean quant"):
        api.evaluate("quant", "pngs", metrics="psnr", rates={"quantt": [8]}, store=env / "s.sqlite", workers=1)
    with pytest.raises(ConfigError, match="not in this run"):
        api.evaluate("quant", "pngs", metrics="psnr", rates={"jpeg": [50]}, store=env / "s.sqlite", workers=1)
    out = ["--out", str(env / "out"), "run", "--dataset", "pngs", "-q", "--metrics", "psnr"]
    for param in ("jpeg.optimize=banana", "jpeg.optimize=3", "webp.method=fast", "webp.method=2.5",
                  "jpeg.subsampling=true"):
        assert _main([*out, "--codecs", param.split(".")[0], "--param", param, "--rates", "50"]) == 2, param
        assert "is not a" in _one_error(capsys.readouterr().err)
    assert _main([*out, "--codecs", "jpeg", "--param", "jpeg.subsampling=444", "--param", "jpeg.optimize=false",
                  "--rates", "50", "--limit", "1", "--no-report"]) == 0


# -- 16: sweep over checkpoints that cannot be used -------------------------------------------
class CheckpointQuant(fakes_bench.QuantCodec):
    """Loads ``checkpoint`` at its first encode (as learned codecs do): a file that does not start
    with b"GOOD", or any file while FAKE_CKPT_BROKEN is set, fails like a state dict with 'net.' keys."""

    name = "ckptq"
    parallel_safe = False

    def __init__(self, checkpoint: str | None = None) -> None:
        self.checkpoint = checkpoint

    def params(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint}

    def encode(self, image: np.ndarray, rate: Any, *, semantics: Any = None) -> Any:
        import os

        from bench.errors import WeightsError

        if os.environ.get("FAKE_CKPT_BROKEN") or not Path(str(self.checkpoint)).read_bytes().startswith(b"GOOD"):
            raise WeightsError(f"{self.checkpoint}: unexpected keys net.encoder.weight …", "export it")
        return super().encode(image, rate)


def test_sweep_names_checkpoints_that_cannot_be_loaded_and_retries_them(env, capsys, monkeypatch):
    (env / "cards" / "codecs" / "ckptq.yaml").write_text(
        "name: ckptq\nentry: test_trust:CheckpointQuant\nrates: [16, 4]\n")
    from bench.registry import catalog

    catalog.reset()
    ckpts = env / "ckpt"
    ckpts.mkdir()
    (ckpts / "step=10.ckpt").write_bytes(b"GOOD 1")
    (ckpts / "step=20.ckpt").write_bytes(b"GOOD 2")
    (ckpts / "step=30.ckpt").write_bytes(b"net.-prefixed keys")
    argv = ["--out", str(env / "out"), "sweep", "--codec", "ckptq", "--checkpoints", str(ckpts / "*.ckpt"),
            "--dataset", "pngs", "--metrics", "psnr", "--limit", "2", "-q", "--gate", "best"]
    capsys.readouterr()
    assert main(argv) == 3
    line = _one_error(capsys.readouterr().err)
    assert "1 checkpoint(s) could not be used by ckptq" in line and "step=30.ckpt" in line
    assert "step=10.ckpt" not in line and "--retry-failed" in line and "net." in line
    # a re-run evaluates the good ones no more, and still refuses the broken one (not "already evaluated")
    assert main(argv) == 3
    captured = capsys.readouterr()
    assert "step=30.ckpt" in _one_error(captured.err)
    # a checkpoint that failed while its codec could not load (FAKE_CKPT_BROKEN): fixed, then retried
    (ckpts / "step=30.ckpt").unlink()
    (ckpts / "step=40.ckpt").write_bytes(b"GOOD 4")
    monkeypatch.setenv("FAKE_CKPT_BROKEN", "1")
    assert main(argv) == 3 and "step=40.ckpt" in _one_error(capsys.readouterr().err)
    monkeypatch.delenv("FAKE_CKPT_BROKEN")
    assert main(argv) == 3  # its failed rows are stored: recomputed only when asked
    capsys.readouterr()
    assert main([*argv, "--retry-failed"]) == 0
    out = capsys.readouterr().out
    assert "step=10.ckpt" in out and "(already evaluated)" in out.split("step=10.ckpt")[1].splitlines()[0]
    assert "(already evaluated)" not in out.split("step=40.ckpt")[1].splitlines()[0]
    assert "gate: no regression beyond tolerance" in out


# -- 17: hostile store files, unreadable images, process limits ---------------------------------
def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("column,value", [("config", "[]"), ("meta", "3"), ("rows.metrics", "[1, 2]"),
                                          ("rows.bytes", '"x"')])
def test_store_json_of_the_wrong_shape_is_damage(env, capsys, column, value):
    out = env / "out"
    assert main(["--out", str(out), "run", "--codecs", "quant", "--dataset", "pngs", "--metrics", "psnr", "-q",
                 "--workers", "1", "--no-report"]) == 0
    table, _, col = column.rpartition(".")
    con = sqlite3.connect(out / "bench.sqlite")
    with con:
        con.execute(f"UPDATE {table or 'runs'} SET {col} = ?", (value,))
    con.close()
    capsys.readouterr()
    for argv in ([] if table else [["runs"]]) + [["report"], ["compare", "latest", "--anchor", "quant", "--test",
                                                                "quant"], ["export"]]:
        assert main(["--out", str(out), *argv]) == 4, argv
        line = _one_error(capsys.readouterr().err)
        assert "is damaged" in line and "recover" in line, line


def test_a_file_that_is_no_store_is_never_written_and_recover_says_so(env, capsys):
    out = env / "out"
    out.mkdir()
    db = out / "bench.sqlite"
    run = ["--out", str(out), "run", "--codecs", "quant", "--dataset", "pngs", "--metrics", "psnr", "-q"]
    db.write_text("name,age\nada,36\n")  # not SQLite at all
    for argv in (["recover"], ["recover", "--force"], ["runs"], run[2:]):
        assert main(["--out", str(out), *argv]) == 4, argv
        line = _one_error(capsys.readouterr().err)
        assert "not an SQLite file, not a bench run store" in line and "bench recover" not in line, line
    assert db.read_text() == "name,age\nada,36\n"
    db.unlink()
    con = sqlite3.connect(db)  # a foreign SQLite database
    with con:
        con.execute("CREATE TABLE users (id INTEGER, name TEXT)")
        con.execute("INSERT INTO users VALUES (1, 'ada')")
    con.close()
    before = _sha(db)
    for argv in (run, ["--out", str(out), "runs"], ["--out", str(out), "report"]):
        assert main(argv) == 4
        line = _one_error(capsys.readouterr().err)
        assert "an SQLite database with other tables (users; no runs, rows)" in line, line
    assert _sha(db) == before  # no table added, not one byte written
    assert sorted(p.name for p in out.iterdir()) == ["bench.sqlite"]


def test_an_unreadable_image_is_a_failed_row_not_an_aborted_run(env, capsys):
    import os

    data = env / "data"
    (data / "zz_folder.png").mkdir()  # named like an image, but a folder
    unreadable = sorted(data.glob("*.png"))[0]
    root = os.geteuid() == 0
    if not root:
        unreadable.chmod(0)
    out = env / "out"
    rc = main(["--out", str(out), "run", "--codecs", "quant", "--dataset", "pngs", "--metrics", "psnr", "-q",
               "--workers", "1", "--no-report"])
    assert rc == 0, capsys.readouterr().err
    with Store(out / "bench.sqlite", readonly=True) as store:
        rows = list(store.rows(store.run("latest")["run_id"]))
    failed = {r.image_id: r.error for r in rows if r.status != "ok"}
    assert "cannot load image" in failed["zz_folder"] and "not a regular file" in failed["zz_folder"]
    if not root:  # mode 000 (root reads it anyway)
        assert "Permission" in failed[unreadable.stem]
    assert len(rows) == 4 * 7 and sum(r.status != "ok" for r in rows) == 4 * (1 if root else 2)


def test_process_limits_get_their_own_fix(env):
    import errno
    import os
    import resource
    import subprocess
    import sys

    from bench.runtime.limits import os_error_fix

    assert "ulimit -n" in os_error_fix(OSError(errno.EMFILE, "Too many open files"))
    assert "ulimit -f" in os_error_fix(OSError(errno.EFBIG, "File too large"))
    assert "disk" in os_error_fix(OSError(errno.ENOSPC, "No space left on device"))
    out = env / "out"
    assert main(["--out", str(out), "run", "--codecs", "quant", "--dataset", "pngs", "--metrics", "psnr", "-q",
                 "--workers", "1", "--no-report"]) == 0
    env_vars = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), str(Path(__file__).parent)])}

    def limited(limit: int, *argv: str, which: int = resource.RLIMIT_FSIZE) -> subprocess.CompletedProcess:
        def pre() -> None:
            resource.setrlimit(which, (limit, limit))

        return subprocess.run([sys.executable, "-m", "bench", "--out", str(out), *argv], env=env_vars,
                              capture_output=True, text=True, preexec_fn=pre, timeout=120)

    # a report whose figure outgrows `ulimit -f` (34 KiB: the store's 32 KiB index still fits)
    done = limited(34 * 1024, "report", "--dest", str(env / "rep"))
    assert done.returncode == 7, done.stderr
    assert "ulimit -f" in _one_error(done.stderr) and "permissions" not in done.stderr
    # the store's shared-memory index itself does not fit
    (out / "bench.sqlite-shm").unlink(missing_ok=True)
    done = limited(16 * 1024, "runs")
    assert done.returncode == 4 and "ulimit -f is 16 KiB" in _one_error(done.stderr), done.stderr
    # `ulimit -n 10`: two codec workers need more descriptors than that
    done = limited(10, "run", "--codecs", "quant", "--dataset", "pngs", "--metrics", "psnr", "-q", "--workers", "2",
                   "--no-cache", "--tag", "fds", which=resource.RLIMIT_NOFILE)
    line = _one_error(done.stderr)
    assert done.returncode == 7 and "Too many open files" in line and "ulimit -n 1024; it is 10" in line, line
    assert "permissions" not in line


# -- 18: tags, text chunks, SIGTERM ----------------------------------------------------------
def test_hostile_tags_do_not_break_summary_md_or_reach_the_terminal(env, capsys):
    out = env / "out"
    tag = "evil|tag\nline2\x1b[31mRED\x1b[0m\x07"
    assert main(["--out", str(out), "run", "--codecs", "quant", "--dataset", "pngs", "--metrics", "psnr", "-q",
                 "--workers", "1", "--tag", tag]) == 0
    printed = capsys.readouterr().out
    assert main(["--out", str(out), "runs"]) == 0
    printed += capsys.readouterr().out
    assert "\x1b" not in printed and "\x07" not in printed and "\\x1b[31mRED" in printed
    md = next(out.glob("*/summary.md")).read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 4  # header, rule, one line per rate point: the newline did not split a row
    widths = {line.count("|") - line.count("\\|") for line in table}
    assert len(widths) == 1, table  # the tag's '|' is escaped, not a column
    assert r"quant@evil\|tag line2\x1b[31mRED\x1b[0m\x07" in md and "\x1b" not in md


def test_a_png_with_a_1_mb_ztxt_chunk_loads(tmp_path):
    import zlib

    from PIL import Image, PngImagePlugin

    from bench.datasets.base import read_rgb

    pixels = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "x" * (2 * 1024 * 1024), zip=True)  # 2 MiB of text, a few KiB compressed
    path = tmp_path / "meta.png"
    Image.fromarray(pixels).save(path, pnginfo=info)
    assert b"zTXt" in path.read_bytes() and len(zlib.compress(b"x" * 2**21)) < 2**16
    assert np.array_equal(read_rgb(path), pixels)


def test_sigterm_prints_one_line_keeps_the_rows_and_exits_143(env):
    import os
    import signal
    import subprocess
    import sys
    import time

    from bench.errors import TERMINATED_EXIT

    out = env / "out"
    env_vars = {**os.environ, "FAKE_CODEC_SLEEP": "0.3",
                "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), str(Path(__file__).parent)])}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "--out", str(out), "run", "--codecs", "quant",
                             "--dataset", "pngs", "--metrics", "psnr", "-q", "--workers", "1", "--no-report"],
                            env=env_vars, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = out / "bench.sqlite"
    deadline = time.time() + 60
    while time.time() < deadline:  # until some rows are stored
        time.sleep(0.2)
        if db.exists():
            try:
                con = sqlite3.connect(db)
                n = con.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
                con.close()
            except sqlite3.Error:
                continue
            if n >= 3:
                break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == TERMINATED_EXIT == 143, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["terminated (SIGTERM): finished rows are stored; re-run the same command to resume"], err
    with Store(db, readonly=True) as store:
        kept = store.count(store.runs()[0]["run_id"])
    assert 3 <= kept < 24
    # the same command resumes and finishes
    env_vars["FAKE_CODEC_SLEEP"] = "0"
    done = subprocess.run(proc.args, env=env_vars, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Store(db, readonly=True) as store:
        assert store.count(store.runs()[0]["run_id"]) == 24