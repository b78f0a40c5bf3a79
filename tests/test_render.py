"""Figures are saved once per content and drawn by several processes at once: a second report
draws nothing, a changed value or option redraws, a forked child's PNG equals one drawn here,
and a child's error or warning reaches the caller as it would from a serial call."""

from __future__ import annotations

import json
import os
import struct
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
from fakes_bench import count_calls
from matplotlib.figure import Figure
from test_figures_layout import summary

import bench.report.render as render_mod
from bench.errors import ConfigError
from bench.report.curves import curve_jobs, write_curves
from bench.report.render import INDEX, FigureJob, content_key, render


@pytest.fixture
def draws(monkeypatch):
    """Count the figures drawn in this process (workers=1 draws here)."""
    return count_calls(monkeypatch, render_mod, "_draw")


def test_unchanged_curves_are_not_drawn_again_and_changed_ones_are(tmp_path, draws):
    df = summary()
    paths = write_curves(df, tmp_path, workers=1)
    assert draws["n"] == 5 and all(p.exists() for p in paths)
    index = json.loads((tmp_path / INDEX).read_text())
    assert set(index) == {p.stem for p in paths}
    assert write_curves(df, tmp_path, workers=1) == paths and draws["n"] == 5  # same content: nothing drawn
    changed = df.copy()
    changed.loc[changed["codec"] == "jpeg", "psnr"] += 1.0  # a value changes: the key is the whole table's
    write_curves(changed, tmp_path, workers=1)
    assert draws["n"] == 10
    (tmp_path / "rd_lpips.png").unlink()  # a missing file is drawn again
    write_curves(changed, tmp_path, workers=1)
    assert draws["n"] == 11
    write_curves(changed, tmp_path, width="double", workers=1)  # another option: every curve
    assert draws["n"] == 16
    width = struct.unpack(">I", (tmp_path / "rd_psnr.png").read_bytes()[16:20])[0]
    assert width == round(7.16 * 200)


def test_content_key_depends_on_values_and_attrs():
    df = summary()
    other = df.copy()
    other.attrs = {**df.attrs, "dataset": "coco"}
    assert content_key("rd", df) == content_key("rd", df.copy())
    assert content_key("rd", df) != content_key("rd", other) != content_key("rd", df.iloc[:-1])


def test_a_forked_childs_png_equals_one_drawn_here(tmp_path, monkeypatch):
    monkeypatch.setattr(render_mod, "_can_fork", lambda: True)  # under pytest-xdist this process has threads
    df = summary()
    serial, forked = tmp_path / "serial", tmp_path / "forked"
    a = render(curve_jobs(df, serial), workers=1)
    pids = tmp_path / "pids"
    jobs = [replace(j, title=lambda fig, t=j.title: (pids.open("a").write(f"{os.getpid()}\n"), t(fig))[1])
            for j in curve_jobs(df, forked)]
    b = render(jobs, workers=2)
    drew = set(pids.read_text().split())
    assert drew and str(os.getpid()) not in drew  # forked children drew them
    for pa, pb in zip(a, b):
        if pa.suffix == ".png":
            assert pa.read_bytes() == pb.read_bytes(), pa.name
        assert pb.exists() and pb.with_name(pb.stem + ".caption.txt").read_text() == \
            pa.with_name(pa.stem + ".caption.txt").read_text()


def _job(tmp: Path, name: str, build) -> FigureJob:
    return FigureJob(tmp / name, content_key(name), build, lambda fig: name, ((".png", {"dpi": 50}),))


def _ok_figure() -> Figure:
    fig = Figure(figsize=(1, 1))
    fig.caption_lines = ["ok"]
    return fig


def _bad_figure() -> Figure:
    raise ConfigError("this figure cannot be drawn", "a fix")


def _warning_figure() -> Figure:
    warnings.warn("drawn from another protocol", UserWarning, stacklevel=1)
    return _ok_figure()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_childs_error_and_warning_reach_the_caller(tmp_path, workers, monkeypatch):
    monkeypatch.setattr(render_mod, "_can_fork", lambda: True)
    with pytest.raises(ConfigError, match="cannot be drawn"):
        render([_job(tmp_path, "a", _ok_figure), _job(tmp_path, "b", _bad_figure)], workers=workers)
    assert (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()
    assert not (tmp_path / INDEX).exists()  # nothing recorded: a failed render redraws next time
    with pytest.warns(UserWarning, match="another protocol"):
        render([_job(tmp_path, "c", _warning_figure), _job(tmp_path, "d", _ok_figure)], workers=workers)
    assert {"c", "d"} <= set(json.loads((tmp_path / INDEX).read_text()))


def test_demo_labels_are_computed_once_per_image(monkeypatch, tmp_path):
    import bench.datasets.demo as demo
    from bench.runtime import refcache

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(refcache, "_DEFAULT", {})
    real = demo.synthetic_labels
    calls = count_calls(monkeypatch, demo, "synthetic_labels")
    ds = demo.DemoDataset(height=64, width=128)
    first = ds.load("chelsea").labels
    second = ds.load("chelsea").labels
    assert calls["n"] == 1 and (first == second).all() and (first == real(ds.load("chelsea").image)).all()


def test_kill_9_of_a_report_leaves_no_drawing_process_and_no_temporary_file(tmp_path):
    """The drawing children die with the report (PDEATHSIG) and remove their temporary files."""
    import subprocess
    import sys
    import time

    from fakes_bench import alive

    from bench import evaluate

    store = tmp_path / "bench.sqlite"
    run_id = evaluate(["jpeg"], "demo", metrics=["psnr", "msssim"], limit=1, rates=[50, 80],
                      store=store)["run_id"].iloc[0]
    slow = tmp_path / "slow"
    slow.mkdir()  # every savefig waits inside its temporary file, so the kill lands mid-write
    (slow / "sitecustomize.py").write_text(
        "import time, matplotlib.figure as f\n_save = f.Figure.savefig\n"
        "def savefig(self, *a, **k):\n    time.sleep(60)\n    return _save(self, *a, **k)\n"
        "f.Figure.savefig = savefig\n")
    dest = tmp_path / "report"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(slow), str(Path(__file__).resolve().parents[1])])}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "--out", str(tmp_path), "report", "--dest", str(dest),
                             run_id], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (children and list(dest.glob(".rd_*.tmp.*"))):
        time.sleep(0.1)
        out = subprocess.run(["ps", "--ppid", str(proc.pid), "-o", "pid="], capture_output=True, text=True).stdout
        children = [int(p) for p in out.split()]
    assert children and list(dest.glob(".rd_*.tmp.*")), "the report never started drawing in children"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(p) for p in children):
        time.sleep(0.1)
    assert not [p for p in children if alive(p)], "a drawing process outlived the report"
    assert not list(dest.glob(".rd_*")), "a drawing child left a temporary file"


def test_ctrl_c_of_a_report_says_its_files_are_complete(tmp_path, monkeypatch, capsys):
    from bench.cli import main

    store = tmp_path / "bench.sqlite"
    run_id = evaluate_quick(store)

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(render_mod, "start", interrupted)
    assert main(["--out", str(tmp_path), "report", run_id]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "interrupted: the files written so far are complete")


def evaluate_quick(store: Path) -> str:
    from bench import evaluate

    return str(evaluate(["jpeg"], "demo", metrics=["psnr"], limit=1, rates=[50], store=store)["run_id"].iloc[0])


def test_report_width_double_draws_the_curves_at_7_16_inches(tmp_path):
    from bench.cli import main

    run_id = evaluate_quick(tmp_path / "bench.sqlite")
    assert main(["--out", str(tmp_path), "report", "--width", "double", run_id]) == 0
    png = tmp_path / run_id / "rd_psnr.png"
    assert struct.unpack(">I", png.read_bytes()[16:20])[0] == round(7.16 * 200)
    with pytest.raises(SystemExit) as exc:  # the parser's one-line usage error
        main(["--out", str(tmp_path), "report", "--width", "triple", run_id])
    assert exc.value.code == 2


CTRL_C_BETWEEN_JOBS = """
import os, signal, sys, time
from pathlib import Path
from matplotlib.figure import Figure
from bench.report.render import FigureJob, start

def build():
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [0, 1])
    fig.caption_lines = []
    return fig

out = Path(sys.argv[1])
pending = start([FigureJob(out / f"f{i}", f"k{i}", build, lambda fig: "", ((".png", {"dpi": 40}),))
                 for i in range(2)], workers=2)
assert pending._pool is not None, "not drawn in children"
while not all(f.done() for f in pending._futures):  # both children drawn, now waiting for a job
    time.sleep(0.05)
time.sleep(0.3)
try:
    os.killpg(0, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
    time.sleep(10)
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(130)
"""


def test_ctrl_c_while_the_drawing_children_wait_prints_no_traceback(tmp_path):
    """Children waiting between jobs leave at once on Ctrl-C (multiprocessing would print each
    worker's KeyboardInterrupt traceback); only the parent reports the interruption."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", CTRL_C_BETWEEN_JOBS, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, start_new_session=True)
    assert proc.returncode == 130 and proc.stdout.strip() == "interrupted", proc.stderr
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr
