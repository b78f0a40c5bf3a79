"""`bench fetch` against a loopback HTTP server (tests/fetch_server.py): verified downloads,
resume, faults, mirror, offline, --from, dataset unpacking, and `bench run` fetching ESPNetv2.
No test touches the internet: BENCH_MIRROR points at 127.0.0.1 whenever downloads are on."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fetch_server import Loopback, Server

from bench.cli import main
from bench.errors import EXIT_CODES, UnavailableError
from bench.runtime import fetch as F
from bench.runtime.fetch import download as D

UNAVAILABLE = UnavailableError.exit_code
SMALL = "espnetv2_s_0.5_city_512x256.pth"  # 469 kB, the smallest published file
SMALL_ENTRY = "espnetv2-0.5-512x256"
ROOT = Path(__file__).resolve().parent.parent


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def espnet(shared_dir: Path) -> Path:
    return shared_dir / "weights" / "espnetv2"


@pytest.fixture()
def server(tmp_path, monkeypatch, espnet):
    """The loopback mirror serving the ESPNetv2 files under their registry names; downloads on,
    BENCH_MIRROR = the server, BENCH_DATA_DIR = a fresh folder."""
    state = Loopback()
    for p in espnet.glob("*.pth"):
        state.add(p.name, p.read_bytes())
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("BENCH_OFFLINE")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("BENCH_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("BENCH_ESPNETV2_WEIGHTS", raising=False)
    with Server(state) as s:
        monkeypatch.setenv("BENCH_MIRROR", s.url)
        yield s


def weights_folder() -> Path:
    return Path(os.environ["BENCH_DATA_DIR"]) / "weights"


def leftovers() -> list[str]:
    """Files under the weights folder other than lock files."""
    folder = weights_folder()
    return sorted(p.name for p in folder.glob("*") if not p.name.endswith(".lock")) if folder.is_dir() else []


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# -- by name, hash, resume ---------------------------------------------------------------
def test_fetch_by_name_lands_the_file_with_its_sha256(server, espnet, capsys):
    assert main(["fetch", SMALL_ENTRY, "-q"]) == 0
    out = capsys.readouterr()
    got = weights_folder() / SMALL
    assert sha(got.read_bytes()) == sha((espnet / SMALL).read_bytes())
    assert sha(got.read_bytes()) == F.select([SMALL_ENTRY])[0].files[0].sha256  # the registry's full hash
    assert f"downloading {SMALL}" in out.err and server.url in out.err  # one line per file
    assert server.requests_for(SMALL) == [None]
    assert leftovers() == [SMALL]
    # a second fetch finds the verified copy: no request
    assert main(["fetch", SMALL_ENTRY, "-q"]) == 0
    assert "already present" in capsys.readouterr().out and server.requests_for(SMALL) == [None]


def test_corrupted_server_copy_is_refused_and_nothing_is_left(server, capsys):
    server.faults[SMALL] = "corrupt"
    assert main(["fetch", SMALL_ENTRY, "-q"]) == UNAVAILABLE
    line = one_error_line(capsys.readouterr().err)
    assert "sha256" in line and "deleted" in line and SMALL in line
    assert leftovers() == []  # neither the final name nor a .part


def test_a_damaged_local_copy_is_deleted_reported_and_fetched_again(server, espnet, capsys):
    weights_folder().mkdir(parents=True)
    (weights_folder() / SMALL).write_bytes(b"truncated")
    assert main(["fetch", SMALL_ENTRY, "-q"]) == 0
    assert "did not match its hash: deleted" in capsys.readouterr().err
    assert (weights_folder() / SMALL).read_bytes() == (espnet / SMALL).read_bytes()


def test_a_download_cut_at_half_resumes(server, espnet, capsys):
    size = (espnet / SMALL).stat().st_size
    server.faults[SMALL] = "cut-once"
    assert main(["fetch", SMALL_ENTRY, "-q"]) == 0
    first, second = server.requests_for(SMALL)
    resumed_at = int(second.removeprefix("bytes=").rstrip("-"))  # the second asks for the rest only
    assert first is None and 0 < resumed_at <= size // 2
    assert (weights_folder() / SMALL).read_bytes() == (espnet / SMALL).read_bytes()


def test_a_part_left_by_a_killed_run_is_resumed_by_the_next(server, espnet, capsys):
    data = (espnet / SMALL).read_bytes()
    server.faults[SMALL] = "cut"  # every answer stops at half: the run fails, the .part stays
    assert main(["fetch", SMALL_ENTRY, "-q"]) == UNAVAILABLE
    assert "cannot download" in one_error_line(capsys.readouterr().err)
    part = weights_folder() / (SMALL + ".part")
    kept = part.read_bytes()
    assert 0 < len(kept) <= len(data) // 2 and data.startswith(kept) and not (weights_folder() / SMALL).exists()
    del server.faults[SMALL]
    assert main(["fetch", SMALL_ENTRY, "-q"]) == 0
    assert server.requests_for(SMALL)[-1] == f"bytes={len(kept)}-"
    assert (weights_folder() / SMALL).read_bytes() == data and not part.exists()


# -- faults ------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["404", "500"])
def test_http_errors_are_one_line_naming_url_and_mirror_option(server, fault, capsys):
    server.faults[SMALL] = fault
    assert main(["fetch", SMALL_ENTRY, "-q"]) == UNAVAILABLE
    assert EXIT_CODES[UNAVAILABLE].startswith("missing data or unavailable")
    line = one_error_line(capsys.readouterr().err)
    assert f"{server.url}/{SMALL}" in line and f"HTTP {fault}" in line and "--mirror" in line
    assert leftovers() == []


def test_a_timeout_is_one_line_naming_url_and_mirror_option(server, capsys, monkeypatch):
    monkeypatch.setattr(D, "TIMEOUT", (2.0, 0.5))
    server.faults[SMALL] = "stall"
    assert main(["fetch", SMALL_ENTRY, "-q"]) == UNAVAILABLE
    line = one_error_line(capsys.readouterr().err)
    assert "timed out" in line and f"{server.url}/{SMALL}" in line and "--mirror" in line


def test_a_full_disk_leaves_no_partial_file(server, capsys, monkeypatch):
    real_open = open

    class Full(io.FileIO):
        def write(self, b):  # the disk fills after the first chunk is accepted
            raise OSError(28, "No space left on device")

    def fake_open(path, mode="r", *args, **kwargs):
        if str(path).endswith(".part") and "b" in mode and ("w" in mode or "a" in mode):
            return Full(path, "w")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(D, "open", fake_open, raising=False)
    rc = main(["fetch", SMALL_ENTRY, "-q"])
    err = capsys.readouterr().err
    assert rc == 7, err  # OutputError: "output: a path cannot be written"
    assert "No space left" in one_error_line(err)
    assert leftovers() == []


def test_drive_confirmation_page_and_quota_are_one_line_each(tmp_path, monkeypatch, capsys):
    import gdown
    from gdown.exceptions import FileURLRetrievalError

    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("BENCH_OFFLINE")
    calls = []

    def fake(message):
        def download(**kwargs):
            calls.append(kwargs["id"])
            raise FileURLRetrievalError(message)
        return download

    monkeypatch.setattr(gdown, "download", fake("Too many users have viewed or downloaded this file recently."))
    assert main(["fetch", "sqgan-cityscapes", "-q"]) == UNAVAILABLE
    line = one_error_line(capsys.readouterr().err)
    assert "quota" in line and "drive.google.com" in line and "--from DIR" in line
    monkeypatch.setattr(gdown, "download", fake("Cannot retrieve the public link of the file. You may need to "
                                                "change the permission to 'Anyone with the link'"))
    assert main(["fetch", "spic-cityscapes", "-q"]) == UNAVAILABLE
    line = one_error_line(capsys.readouterr().err)
    assert "confirmation page" in line and "1OTVp4KtGT75PRwWHmbtFRlTzpHjJwmPQ" in line
    assert calls == ["10N0pxmfLbm-D2lYTOX-Y0014YicF2u-q", "1OTVp4KtGT75PRwWHmbtFRlTzpHjJwmPQ"]


def test_two_processes_fetching_at_once_end_with_one_verified_copy(server, espnet):
    import time

    server.faults[SMALL] = "slower"  # ~4 s per download
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # the public API in fresh interpreters (the CLI does the same; this starts faster)
    cmd = [sys.executable, "-c", f"import bench; bench.fetch([{SMALL_ENTRY!r}], progress=False)"]

    def start() -> subprocess.Popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = start()
    deadline = time.monotonic() + 60
    while not server.requests_for(SMALL) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = start()  # starts while the first is downloading
    results = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], results
    assert server.requests_for(SMALL) == [None]  # the second waited on the lock and found the copy
    assert "downloading" in results[0][1] and "downloading" not in results[1][1]
    assert leftovers() == [SMALL]
    assert (weights_folder() / SMALL).read_bytes() == (espnet / SMALL).read_bytes()


# -- offline, mirror -------------------------------------------------------------------------
def test_offline_makes_no_request(server, monkeypatch, capsys):
    assert main(["fetch", SMALL_ENTRY, "--offline"]) == UNAVAILABLE
    line = one_error_line(capsys.readouterr().err)
    assert "offline" in line and f"bench fetch {SMALL_ENTRY}" in line
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    assert main(["fetch", "espnetv2", "-q"]) == UNAVAILABLE
    # a weights lookup keeps its one-line message, now naming the fetch command
    from bench.runtime import weights as W
    from bench.segmenters.espnetv2 import weight_spec

    with pytest.raises(UnavailableError) as err:
        W.resolve(weight_spec(0.5, (512, 256)))
    assert f"bench fetch {SMALL_ENTRY}" in err.value.fix
    assert server.log == []


def test_mirror_option_and_env_are_used(server, monkeypatch, espnet, capsys):
    # BENCH_MIRROR (the fixture) was used above; --mirror overrides an unusable env value
    monkeypatch.setenv("BENCH_MIRROR", "http://127.0.0.1:9/nothing-here")
    assert main(["fetch", SMALL_ENTRY, "-q", "--mirror", server.url]) == 0
    assert server.requests_for(SMALL) == [None]
    # without a mirror, the registry's own URLs are the sources (not requested here)
    monkeypatch.delenv("BENCH_MIRROR")
    spec = F.select([SMALL_ENTRY])[0].files[0]
    assert [where for where, _ in D.sources(spec)] == list(spec.urls)
    assert spec.urls[0].startswith("https://github.com/sacmehta/EdgeNets/")
    monkeypatch.setenv("BENCH_MIRROR", server.url + "/")
    assert [where for where, _ in D.sources(spec)] == [f"{server.url}/{SMALL}"]


def test_from_dir_imports_hand_copied_files_after_checking_hashes(tmp_path, monkeypatch, espnet, capsys):
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "data"))
    hand = tmp_path / "usb" / "nested" / "deeper"
    hand.mkdir(parents=True)
    shutil.copy(espnet / SMALL, hand / SMALL)
    bad = "espnetv2_s_1.0_city_512x256.pth"
    (hand / bad).write_bytes((espnet / bad).read_bytes()[:1000])  # truncated by hand
    assert main(["fetch", "--from", str(tmp_path / "usb")]) == UNAVAILABLE  # BENCH_OFFLINE=1: no request
    out = capsys.readouterr().out
    assert f"{SMALL_ENTRY}: imported" in out and "espnetv2-1.0-512x256: refused (" in out and "sha256" in out
    assert (tmp_path / "data" / "weights" / SMALL).read_bytes() == (espnet / SMALL).read_bytes()
    assert not (tmp_path / "data" / "weights" / bad).exists()


# -- --list, doctor ---------------------------------------------------------------------------
def test_list_is_one_line_per_entry_within_100_columns(server, capsys):
    assert main(["fetch", SMALL_ENTRY, "-q"]) == 0
    (weights_folder() / "espnetv2_s_1.0_city_512x256.pth").write_bytes(b"damaged")
    capsys.readouterr()
    assert main(["fetch", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 100
    table = {line.split()[0]: line.split() for line in lines[1:] if line.split()}
    assert table[SMALL_ENTRY][3] == "present" and table["espnetv2-1.0-512x256"][3] == "damaged"
    assert table["espnetv2-2.0-1024x512"][3] == "missing"
    assert table["lpips-alex"][-1] == "prefix" and table["fid-inception"][-1] == "sha256"
    assert table["sqgan-cityscapes"][-1] == "recorded" and table["kodak"][1] == "dataset"
    assert len([n for n in table if n.startswith("compressai-")]) == 88  # read from compressai's tables


def test_doctor_names_the_fetch_command_within_100_columns(tmp_path, monkeypatch, capsys):
    from bench.cli.doctor import report

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("BENCH_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("BENCH_ESPNETV2_WEIGHTS", raising=False)
    monkeypatch.delenv("KODAK_ROOT", raising=False)
    screen = report()
    lines = screen.splitlines()
    assert max(len(line) for line in lines) <= 100
    line = {ln.split()[1]: ln for ln in lines if ln.startswith("  [")}
    assert "bench fetch espnetv2-2.0-1024x512" in line["miou"]
    assert "bench fetch fid-inception" in line["fid"] and "bench fetch lpips-alex" in line["lpips"]
    assert "bench fetch kodak" in line["kodak"] and "bench fetch sqgan-cityscapes" in line["sqgan"]
    assert "bench fetch compressai-mbt2018-mse" in line["mbt2018"]
    assert line["psnr"].startswith("  [ok]")
    verbose = report(verbose=True).splitlines()
    assert len(verbose) > len(lines) and max(len(x) for x in verbose) <= 100


# -- weights lookups ---------------------------------------------------------------------------
def test_a_fresh_weights_dir_tree_with_nested_folders_is_found(tmp_path, monkeypatch, espnet):
    from bench.runtime import weights as W
    from bench.segmenters.espnetv2 import weight_spec

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("BENCH_ESPNETV2_WEIGHTS", raising=False)
    tree = tmp_path / "weights"
    nested = tree / "segmenters" / "espnetv2" / "city"
    nested.mkdir(parents=True)
    shutil.copy(espnet / SMALL, nested / SMALL)
    (tree / "a-first-folder").mkdir()
    assert W.resolve(weight_spec(0.5, (512, 256)), None, tree) == nested / SMALL
    monkeypatch.setenv("BENCH_WEIGHTS_DIR", str(tree))  # the env folder is searched the same way
    assert W.resolve(weight_spec(0.5, (512, 256))) == nested / SMALL
    # the first match by file name is hash-checked: a wrong file is not used
    monkeypatch.delenv("BENCH_WEIGHTS_DIR")
    bad = tree / "a-first-folder" / SMALL
    bad.write_bytes(b"not the weights")
    with pytest.raises(UnavailableError, match="sha256"):
        W.resolve(weight_spec(0.5, (512, 256)), None, tree)


# -- datasets ----------------------------------------------------------------------------------
def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_coco_archives_unpack_into_the_cards_layout_and_the_dataset_loads(server, shared_dir, monkeypatch, capsys):
    from bench.registry import catalog

    monkeypatch.delenv("COCO_ROOT", raising=False)
    coco = shared_dir / "data" / "coco"
    images = {f"val2017/{p.name}": p.read_bytes() for p in sorted((coco / "images" / "val2017").glob("*.jpg"))}
    labels = {f"val2017/{p.name}": p.read_bytes()
              for p in sorted((coco / "stuffthingmaps_trainval2017" / "val2017").glob("*.png"))}
    server.add("val2017.zip", _zip(images))
    server.add("stuffthingmaps_trainval2017.zip", _zip({**labels, "train2017/skipped.png": b"x"}))
    # before: the dataset error names the fetch command (datasets are never fetched implicitly)
    with pytest.raises(UnavailableError) as err:
        catalog.make_dataset("coco").ids()
    assert "bench fetch coco" in err.value.fix and server.log == []
    assert main(["fetch", "coco", "-q"]) == 0
    out = capsys.readouterr()
    assert "no published hash; recorded sha256" in out.err
    root = Path(os.environ["BENCH_DATA_DIR"]) / "datasets" / "coco"
    assert sorted(p.name for p in (root / "images" / "val2017").iterdir()) == sorted(Path(n).name for n in images)
    assert not (root / "stuffthingmaps_trainval2017" / "train2017").exists()  # only the members the card reads
    assert not list((Path(os.environ["BENCH_DATA_DIR"]) / "downloads").glob("*.zip"))  # archives removed
    ds = catalog.make_dataset("coco")
    assert ds.root == root and len(ds.ids()) == 8
    sample = ds.load(ds.ids()[0])
    assert sample.labels is not None and sample.labels.shape == sample.image.shape[:2]
    assert F.status(F.select(["coco"])[0]) == "present"
    # a damaged unpacked file shows in --list
    (root / "images" / "val2017" / "000000000139.jpg").write_bytes(b"cut")
    assert F.status(F.select(["coco"])[0]) == "damaged"
    recorded = json.loads((Path(os.environ["BENCH_DATA_DIR"]) / "hashes.json").read_text())
    assert recorded["val2017.zip"]["sha256"] == sha(server.files["val2017.zip"])


def test_kodak_lands_file_by_file_verified_and_loads(server, shared_dir, monkeypatch, capsys):
    from bench.registry import catalog

    monkeypatch.delenv("KODAK_ROOT", raising=False)
    for p in (shared_dir / "data" / "kodak").glob("kodim*.png"):
        server.add(p.name, p.read_bytes())
    server.faults["kodim07.png"] = "corrupt"
    assert main(["fetch", "kodak", "-q"]) == UNAVAILABLE  # the damaged one is refused …
    assert "kodim07.png" in one_error_line(capsys.readouterr().err)
    del server.faults["kodim07.png"]
    assert main(["fetch", "kodak", "-q"]) == 0  # … and the rerun fetches only what is missing
    assert len([n for n, _ in server.log]) == 7 + 1 + 17
    ds = catalog.make_dataset("kodak")
    assert len(ds.ids()) == 24 and ds.load(ds.ids()[0]).image.shape == (512, 768, 3)


# -- bench run ---------------------------------------------------------------------------------
def test_bench_run_with_the_mirror_fetches_espnetv2_and_reports_miou(server, tmp_path, espnet, capsys):
    out = tmp_path / "results"
    big = "espnetv2_s_2.0_city_1024x512.pth"
    rc = main(["--out", str(out), "run", "--codecs", "jpeg", "--dataset", "demo", "--limit", "1",
               "--rates", "jpeg=50", "--metrics", "miou,psnr", "-q", "--workers", "1"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert [line for line in captured.err.splitlines() if "downloading" in line] == \
        [f"bench: downloading {big} (3.2M) from {server.url}/{big}"]
    assert (weights_folder() / big).read_bytes() == (espnet / big).read_bytes()
    con = sqlite3.connect(out / "bench.sqlite")
    try:
        metrics = [json.loads(m) for (m,) in con.execute("SELECT metrics FROM rows")]
    finally:
        con.close()
    assert len(metrics) == 1 and {"psnr", "miou_orig_img", "miou_gt_img"} <= set(metrics[0])
    assert metrics[0]["miou_orig_img"] is not None
    md = next(out.glob("*/summary.md")).read_text()
    assert "miou" in md.lower() and "random weights" not in md
    # offline, a fresh data dir: today's one-line message naming the fetch command
    shutil.rmtree(weights_folder())
    rc = main(["--out", str(tmp_path / "r2"), "run", "--codecs", "jpeg", "--dataset", "demo", "--limit", "1",
               "--rates", "jpeg=50", "--metrics", "miou,psnr", "-q", "--offline"])
    assert rc == UNAVAILABLE
    assert "bench fetch espnetv2-2.0-1024x512" in one_error_line(capsys.readouterr().err)
    assert len(server.requests_for(big)) == 1


def test_cityscapes_packages_from_the_mirror_unpack_into_the_official_layout(server, tmp_path, monkeypatch, capsys):
    from fixtures_cityscapes import make_cityscapes_fixture

    from bench.registry import catalog

    monkeypatch.delenv("CITYSCAPES_ROOT", raising=False)
    src = tmp_path / "src"
    make_cityscapes_fixture(src, n_cities=1, per_city=2)
    for package, top in (("leftImg8bit_trainvaltest.zip", "leftImg8bit"), ("gtFine_trainvaltest.zip", "gtFine")):
        members = {p.relative_to(src).as_posix(): p.read_bytes() for p in sorted((src / top).rglob("*.png"))}
        server.add(package, _zip({**members, "license.txt": b"terms", "README": b"read me"}))
    assert main(["fetch", "cityscapes", "-q"]) == 0  # the mirror replaces cityscapesscripts' login
    root = Path(os.environ["BENCH_DATA_DIR"]) / "datasets" / "cityscapes"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["gtFine", "leftImg8bit"]
    ds = catalog.make_dataset("cityscapes")
    assert ds.root == root and len(ds.ids()) == 2
    sample = ds.load(ds.ids()[0])
    assert sample.image.shape == (256, 512, 3) and sample.labels.shape == (256, 512)


def test_unpack_checks_every_member_and_skips_unsafe_paths(tmp_path):
    import tarfile

    from bench.runtime.fetch.registry import FileSpec
    from bench.runtime.fetch.unpack import unpack, unpacked_status

    spec = FileSpec(file="t.tar.gz", unpack={"into": "x", "members": []})
    archive = tmp_path / "t.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in (("a/one.png", b"1" * 10), ("../evil.png", b"2"), ("/abs.png", b"3")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    folder = tmp_path / "ds"
    assert unpack(archive, spec, folder) == 1
    assert (folder / "x" / "a" / "one.png").read_bytes() == b"1" * 10
    assert not (tmp_path / "evil.png").exists() and unpacked_status(folder, spec) == "present"
    (folder / "x" / "a" / "one.png").write_bytes(b"1")
    assert unpacked_status(folder, spec) == "damaged"
    # a zip member whose bytes do not match its CRC-32 is refused, and no file keeps its name
    good = _zip({"val2017/a.png": b"A" * 1000})
    bad = tmp_path / "bad.zip"
    bad.write_bytes(good.replace(b"A" * 1000, b"B" + b"A" * 999, 1))
    zspec = FileSpec(file="bad.zip", unpack={"into": "y", "members": ["val2017/"]})
    with pytest.raises(F.FetchError, match="damaged"):
        unpack(bad, zspec, folder)
    assert not list((folder / "y").rglob("*.png*"))


def test_bad_names_are_one_line_usage_errors(capsys):
    assert main(["fetch", "espnet"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "'espnet' is not a registry name" in line and "espnetv2" in line and "--list" in line
    assert main(["fetch"]) == 2
    assert "name what to fetch" in one_error_line(capsys.readouterr().err)
    # a group or a name prefix selects several entries
    assert [e.name for e in F.select(["compressai-mbt2018-mse"])] == [f"compressai-mbt2018-mse-{q}" for q in range(1, 9)]
    assert len(F.select(["espnetv2"])) == 7 and {e.kind for e in F.select(["datasets"])} == {"dataset"}


def test_weights_lookups_fetch_but_reporting_and_random_mode_never_do(server, espnet):
    from bench.runtime import weights as W
    from bench.segmenters import make_segmenter
    from bench.segmenters.espnetv2 import weight_spec

    # requirements() (bench list / doctor / the run's plan) only look
    seg = make_segmenter("espnetv2", scale=0.5, input_size="512x256")
    assert [r.found for r in seg.requirements()] == [False] and server.log == []
    # smoke-test mode keeps random weights and asks for nothing
    random_seg = make_segmenter("espnetv2", scale=0.5, input_size="512x256", allow_random_weights=True)
    assert random_seg.random_weights and server.log == []
    # a lookup that needs the file fetches it, once
    path = W.resolve(weight_spec(0.5, (512, 256)))
    assert path == weights_folder() / SMALL and path.read_bytes() == (espnet / SMALL).read_bytes()
    assert seg.requirements()[0].found and seg.weights_sha256() == sha(path.read_bytes())
    assert server.requests_for(SMALL) == [None]


def test_a_failed_download_is_tried_once_per_process(monkeypatch):
    """fid and kid share the Inception file: when its download fails, the second lookup reports the
    same failure without a second request (one attempt, one line)."""
    from bench.runtime import fetch

    calls = []

    def failing(entry, spec, dest, progress=True):
        calls.append(spec.file)
        raise fetch.FetchError(f"cannot download {spec.file}: connection failed", "use --mirror")

    monkeypatch.setattr(fetch, "fetch_file", failing)
    name = "weights-inception-2015-12-05-6726825d.pth"
    for _ in range(2):
        with pytest.raises(fetch.FetchError, match="connection failed"):
            fetch.fetch_weight(name)
    assert calls == [name]
    fetch.forget_failures()
    with pytest.raises(fetch.FetchError):
        fetch.fetch_weight(name)
    assert calls == [name, name]


def test_a_refused_run_downloads_nothing(monkeypatch, tmp_path, capsys):
    """Arguments are checked before any metric network's weights are fetched: a bad rate costs no download."""
    from bench.execution import runner

    asked = []
    monkeypatch.setattr(runner, "fetch_missing", lambda missing: asked.append(missing) or False)
    rc = main(["--out", str(tmp_path / "r"), "run", "--codecs", "jpeg", "--dataset", "demo", "--rates", "jpeg=nan",
               "--metrics", "psnr,lpips", "--limit", "1"])
    assert rc == 2 and "nan" in capsys.readouterr().err
    assert asked == []
