"""One device rule for every network: automatic CUDA-else-CPU, and an explicit device that is
not on the machine refused before any work (exit 2 with a fix), never a driver error mid-run."""

from __future__ import annotations

import pytest
import torch

from bench.cli import main
from bench.errors import ConfigError
from bench.runtime.devices import resolve_device


@pytest.fixture()
def gpus(monkeypatch):
    """Pretend the machine has ``n`` CUDA devices (``gpus(n)``)."""
    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    return set_count


def test_auto_is_cuda_when_there_is_one_else_cpu(gpus):
    gpus(0)
    assert resolve_device(None) == resolve_device("auto") == resolve_device("") == "cpu"
    assert resolve_device("cpu") == "cpu"
    gpus(2)
    assert resolve_device(None) == "cuda" and resolve_device("cuda:1") == "cuda:1"


def test_an_absent_or_unknown_device_is_a_config_error_with_a_fix(gpus):
    gpus(0)
    with pytest.raises(ConfigError, match="no usable CUDA device") as err:
        resolve_device("cuda")
    assert "--device cpu" in err.value.fix
    gpus(2)
    with pytest.raises(ConfigError, match="has 2 CUDA device") as err:
        resolve_device("cuda:2")
    assert "cuda:0 … cuda:1" in err.value.fix
    with pytest.raises(ConfigError, match="unknown device 'gpu9'"):
        resolve_device("gpu9")


def test_run_with_an_absent_device_exits_2_before_any_work(gpus, tmp_path, capsys, monkeypatch):
    gpus(0)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "results"
    rc = main(["run", "--codecs", "jpeg", "--dataset", "demo", "--limit", "1", "--metrics", "psnr,lpips",
               "--allow-random-weights", "--device", "cuda", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "no usable CUDA device" in err and "Traceback" not in err and "unexpected" not in err
    assert not (out / "bench.sqlite").exists()  # nothing was started
