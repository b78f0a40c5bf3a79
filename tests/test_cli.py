"""The ``bench`` command line end to end on the bundled demo data."""

from __future__ import annotations

import json
import sqlite3

import pytest

from bench.cli import main


@pytest.fixture()
def offline(tmp_path, monkeypatch):
    """No weights anywhere: a fresh torch hub cache, no weights dir, a private reference cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("BENCH_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("BENCH_ESPNETV2_WEIGHTS", raising=False)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "refcache"))
    return tmp_path


def _rows(db):
    con = sqlite3.connect(db)
    try:
        return [(c, r, json.loads(m)) for c, r, m in con.execute("SELECT codec, rate, metrics FROM rows")]
    finally:
        con.close()


def test_readme_command_writes_tables_and_curves(offline, capsys):
    out = offline / "results"
    rc = main(["--out", str(out), "run", "--codecs", "jpeg2000,jpeg,webp", "--dataset", "demo", "--limit", "2",
               "--rates", "jpeg2000=0.1,0.4", "--rates", "jpeg=10,50", "--rates", "webp=10,50", "-q"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    # network metrics without weights are skipped, each on one line within 100 columns that names
    # the command getting them
    for name in ("lpips", "fid", "kid", "miou"):
        (line,) = [ln for ln in captured.err.splitlines() if f"skipping {name}:" in ln]
        assert len(line) <= 100 and "bench fetch " in line, line
    rows = _rows(out / "bench.sqlite")
    assert len(rows) == 2 * 6 and all("psnr" in m and "msssim" in m for _c, _r, m in rows)
    report = next(p for p in out.iterdir() if p.is_dir())
    names = {p.name for p in report.iterdir()}
    assert {"summary.md", "summary.csv", "summary.tex", "rd_psnr.png", "rd_psnr.pdf"} <= names
    assert "jpeg2000" in (report / "summary.md").read_text()


def test_all_metrics_with_random_weights_are_written_and_marked(offline, capsys):
    out = offline / "results"
    rc = main(["--out", str(out), "run", "--codecs", "jpeg2000", "--dataset", "demo", "--limit", "1",
               "--rates", "0.1,0.8", "--metrics", "all", "--allow-random-weights", "--workers", "1", "-q",
               "--param", "miou.segmenter_params={scale: 0.5, input_size: 512x256}"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = _rows(out / "bench.sqlite")
    assert len(rows) == 2
    for _c, _r, m in rows:
        assert {"psnr", "msssim", "lpips", "miou_orig_img", "miou_gt_img"} <= set(m)
    md = next(out.glob("*/summary.md")).read_text()
    for metric in ("FID", "KID", "LPIPS", "mIoU"):
        assert metric.lower() in md.lower()
    assert "random weights" in md


def test_list_and_doctor_explain_what_is_missing(offline, capsys):
    assert main(["list", "codecs"]) == 0
    listing = capsys.readouterr().out
    assert "jpeg2000" in listing and "available" in listing
    assert main(["doctor"]) == 0
    screen = capsys.readouterr().out
    assert "fid" in screen and "not found" in screen and "demo" in screen


def test_unknown_codec_is_an_error_with_a_suggestion(offline, capsys):
    rc = main(["--out", str(offline / "r"), "run", "--codecs", "jpg2000", "--dataset", "demo"])
    assert rc == 2
    assert "did you mean jpeg2000" in capsys.readouterr().err


# -- every bad input: one line, its documented exit code, no traceback, no store ----------------
def _bad_input_cases():
    run = ["run", "--codecs", "jpeg", "--dataset", "demo", "-q", "--metrics", "psnr"]
    return [  # (id, argv with {out} / {file} / {dir} placeholders, exit code, words in the message)
        ("param-yaml", [*run, "--param", "jpeg.quality=a: b: c"], 2, "not valid YAML"),
        ("param-form", [*run, "--param", "quality=3"], 2, "NAME.KEY=VALUE"),
        ("codec-ctor-valueerror", ["run", "--codecs", "webp", "--dataset", "demo", "--param", "webp.method=abc"], 2,
         "webp"),
        ("out-is-file", [*run, "--out", "{file}"], 7, "is a file"),
        ("out-not-writable", [*run, "--out", "{file}/sub"], 7, "cannot create"),
        ("export-o-dir", ["export", "-o", "{dir}"], 7, "is a folder"),
        ("report-html-dest-file", ["report", "--html", "--dest", "{file}"], 7, "is a file"),
        ("report-dest-file", ["report", "--dest", "{file}"], 7, "is a file"),
        ("compare-csv-file", ["compare", "latest", "--csv", "{file}"], 7, "is a file"),
        ("rates-codec-not-in-codecs", [*run, "--rates", "jpg=50"], 2, "not in --codecs"),
        ("rates-unknown-with-all", ["run", "--codecs", "all", "--dataset", "demo", "--rates", "jpg=50"], 2,
         "did you mean"),
        ("rates-empty", [*run, "--rates", "jpeg="], 2, "no rate value"),
        ("rates-bad-value", [*run, "--rates", "jpeg=abc"], 2, "not a valid"),
        ("limit-negative", [*run, "--limit", "-1"], 2, "--limit"),
        ("limit-zero", [*run, "--limit", "0"], 2, "--limit"),
        ("workers-zero", [*run, "--workers", "0"], 2, "--workers"),
        ("root-is-file", ["run", "--codecs", "jpeg", "--dataset", "kodak", "--root", "{file}"], 3, "is a file"),
        ("root-missing", ["run", "--codecs", "jpeg", "--dataset", "kodak", "--root", "{dir}/nope"], 3, "not found"),
        ("unknown-run", ["report", "nosuchrun"], 4, "no run store"),
        ("ci-seed-negative", ["report", "--ci", "--ci-seed", "-1"], 2, "--ci-seed"),
        ("ci-heavy-zero", ["report", "--ci", "--ci-heavy-resamples", "0"], 2, "--ci-heavy-resamples"),
        ("ci-resamples-few", ["compare", "latest", "--gate", "significant", "--ci-resamples", "5"], 2,
         "--ci-resamples"),
        ("pair-rate-form", ["compare", "latest", "--pair-rate", "50"], 2, "RATE_A=RATE_B"),
        ("delta-tolerance-form", ["compare", "latest", "--delta-tolerance", "psnr"], 2, "METRIC=VALUE"),
        ("more-runs-without-html", ["report", "a", "b"], 2, "--html"),
        ("miou-average", ["run", "--codecs", "jpeg", "--dataset", "demo", "-q", "--metrics", "miou",
                          "--param", "miou.average=bogus"], 2, "average"),
        ("gpus-without-ray", [*run, "--gpus-per-task", "0.5"], 2, "--executor ray"),
        ("gpus-negative", [*run, "--executor", "ray", "--gpus-per-task", "-1"], 2, "negative"),
        ("device-absent", [*run, "--device", "cuda:7"], 2, "CUDA device"),
    ]


@pytest.mark.parametrize("argv, code, words", [c[1:] for c in _bad_input_cases()],
                         ids=[c[0] for c in _bad_input_cases()])
def test_bad_input_is_one_line_with_its_exit_code(argv, code, words, offline, capsys):
    from bench.errors import EXIT_CODES

    a_file = offline / "a_file.txt"
    a_file.write_text("not a folder")
    a_dir = offline / "a_dir"
    a_dir.mkdir()
    out = offline / "results"
    args = [a.format(file=a_file, dir=a_dir, out=out) for a in argv]
    rc = main(([] if "--out" in args else ["--out", str(out)]) + args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code and code in EXIT_CODES, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert words in lines[0], lines[0]
    assert not (out / "bench.sqlite").exists() and not out.exists(), "a rejected command created a store"


@pytest.mark.parametrize("argv", [["run"], ["run", "--codecs", "jpeg", "--dataset", "demo", "--limit", "x"],
                                  ["nosuchcommand"], ["report", "--bogus"], ["report", "--html", "--rate", "bpp"]])
def test_usage_errors_are_one_line_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: bench"), err
    assert "--help" in err


def test_kodak_download_line_is_its_own(offline, capsys, monkeypatch):
    monkeypatch.delenv("KODAK_ROOT", raising=False)
    assert main(["--out", str(offline / "r"), "run", "--codecs", "jpeg", "--dataset", "kodak"]) == 3
    err = capsys.readouterr().err
    assert "r0k.us/graphics/kodak" in err and "any directory of images" not in err


def test_unexpected_error_is_one_line_and_v_shows_the_traceback(offline, capsys, monkeypatch):
    import bench.cli.info as cli

    def broken(args):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(cli, "cmd_doctor", broken)
    assert main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: unexpected RuntimeError: simulated bug (run with -v for the traceback)"
    assert main(["doctor", "-v"]) == 1  # -v after the subcommand, too
    assert "Traceback" in capsys.readouterr().err


def test_global_options_after_the_subcommand(offline, capsys):
    out = offline / "after"
    rc = main(["run", "--codecs", "jpeg", "--dataset", "demo", "--limit", "1", "--rates", "jpeg=50",
               "--metrics", "psnr", "-q", "--out", str(out), "-v"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "bench.sqlite").is_file() and list(out.glob("demo-*/summary.md"))
    capsys.readouterr()
    assert main(["runs", "--out", str(out)]) == 0
    assert "demo-" in capsys.readouterr().out
    assert main(["--out", str(out), "runs", "--out", str(offline / "empty")]) == 0  # the later one wins
    assert "no run store" in capsys.readouterr().out


def test_tagged_run_shows_codec_at_tag_in_tables_and_html(offline, capsys):
    out = offline / "tagged"
    assert main(["run", "--codecs", "jpeg", "--dataset", "demo", "--limit", "1", "--rates", "jpeg=50",
                 "--metrics", "psnr", "-q", "--out", str(out), "--tag", "T7"]) == 0
    md = next(out.glob("demo-*/summary.md")).read_text()
    assert "| jpeg@T7 " in md
    assert main(["report", "--html", "--no-crops", "--out", str(out)]) == 0
    html = next(out.glob("demo-*/report.html")).read_text()
    assert "<td>jpeg@T7</td>" in html or ">jpeg@T7<" in html


def test_reading_a_classical_run_needs_no_torch(offline):
    """report, compare and export of stored PSNR / MS-SSIM rows do not import torch (1–2 s)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = offline / "results"
    assert main(["--out", str(out), "run", "--codecs", "jpeg,webp", "--dataset", "demo", "--limit", "1",
                 "--metrics", "psnr,msssim", "--rates", "jpeg=50,90", "--rates", "webp=50,90", "-q",
                 "--no-report"]) == 0
    code = ("import sys\nfrom bench.cli import main\n"
            f"out = {str(out)!r}\n"
            "assert main(['report', '--out', out]) == 0\n"
            "assert main(['compare', 'latest', '--anchor', 'jpeg', '--test', 'webp', '--out', out]) in (0, 6)\n"
            "assert main(['export', '--out', out]) == 0\n"
            "print('torch' in sys.modules)\n")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_a_reader_that_leaves_early_ends_the_output_without_a_message():
    """`bench list codecs | head -1`: stdout's reader closes the pipe; bench stops quietly with
    128 + SIGPIPE instead of "error: Broken pipe; fix: check the path…"."""
    import subprocess
    import sys

    from bench.errors import BROKEN_PIPE_EXIT

    proc = subprocess.Popen([sys.executable, "-m", "bench", "list", "codecs"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == BROKEN_PIPE_EXIT and err == "", err


def test_report_of_two_runs_without_html_names_them(tmp_path, capsys):
    """`bench report --ci 0 RUN` takes 0 for a first run: the error names both runs."""
    assert main(["--out", str(tmp_path), "report", "--ci", "0", "demo-1"]) == 2
    err = capsys.readouterr().err
    assert "several runs ('0', 'demo-1')" in err and "--ci takes no value" in err
