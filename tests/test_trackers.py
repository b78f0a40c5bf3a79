"""--log tensorboard / mlflow read back with the trackers' own readers; the Lightning callback in Trainer.fit."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from bench.cli import main
from bench.integrations.trackers import scalar_key

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))

RUN = ["run", "--codecs", "jpeg", "--dataset", "demo", "--metrics", "psnr", "--limit", "1", "--rates", "jpeg=20,50",
       "--no-report", "-q", "--step", "7"]


def _rows(out):
    from bench.api import load_results

    return load_results(out / "bench.sqlite", "latest")


def test_tensorboard_event_file_holds_scalars_figures_crops(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "res"
    assert main(["--out", str(out), *RUN, "--log", f"tensorboard:{tmp_path / 'tb'}"]) == 0
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    rows = _rows(out)
    for rate in ("20", "50"):
        for metric in ("psnr", "bpp"):
            (event,) = acc.Scalars(scalar_key("jpeg", metric, rate))
            expected = rows[rows["rate"] == rate][metric].mean()
            assert event.step == 7 and event.value == pytest.approx(expected, rel=1e-6)
    assert "rd/rd_psnr" in tags["images"]  # the RD curve figure
    crops = [t for t in tags["images"] if t.startswith("crops/")]
    assert "crops/original" in crops and len(crops) == 3  # original + lowest and highest rate point
    assert "run/metadata/text_summary" in tags["tensors"]


def test_mlflow_store_holds_metrics_params_artifacts(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from bench.integrations.trackers import mlflow_uri

    out = tmp_path / "res"
    assert main(["--out", str(out), *RUN, "--log", f"mlflow:{tmp_path / 'mlruns'}"]) == 0
    uri, _ = mlflow_uri(str(tmp_path / "mlruns"))
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("bench")
    (run,) = client.search_runs([exp.experiment_id])
    rows = _rows(out)
    (point,) = client.get_metric_history(run.info.run_id, scalar_key("jpeg", "psnr", "50"))
    assert point.step == 7 and point.value == pytest.approx(rows[rows["rate"] == "50"]["psnr"].mean(), rel=1e-6)
    params = run.data.params
    assert params["run_id"] == rows["run_id"].iloc[0] and params["dataset.name"] == "demo"
    assert params["dataset.content_hash"] and params["codecs.jpeg.name"] == "jpeg"
    assert run.data.tags["bench.run_id"] == rows["run_id"].iloc[0] and run.info.status == "FINISHED"
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "rd/step_7")}
    assert "rd/step_7/rd_psnr.png" in arts
    assert len(client.list_artifacts(run.info.run_id, "crops/step_7")) == 3


@pytest.mark.parametrize("spec, package", [("tensorboard", "tensorboard"), ("mlflow", "mlflow"), ("wandb", "wandb")])
def test_missing_tracker_package_says_what_to_install(tmp_path, monkeypatch, spec, package):
    from bench.errors import UnavailableError
    from bench.integrations.trackers import open_tracker

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard" if package == "tensorboard" else package, None)
    with pytest.raises(UnavailableError) as err:
        open_tracker(spec, tmp_path)
    assert f"pip install {package}" in err.value.fix and err.value.exit_code == 3


def test_unknown_tracker_is_a_config_error(tmp_path, capsys):
    assert main(["--out", str(tmp_path), *RUN, "--log", "wandb-online"]) == 2
    assert "unknown tracker" in capsys.readouterr().err


def test_lightning_callback_in_two_epoch_fit(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    import torch
    from lightning.pytorch.loggers import CSVLogger

    from bench.codecs.pillow_codecs import JpegCodec
    from bench.integrations.lightning import BenchCallback

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, _i):
            return self.layer(batch[0]).pow(2).mean()

        def validation_step(self, batch, _i):
            self.log("val_loss", self.layer(batch[0]).pow(2).mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class ModuleCodec(JpegCodec):  # the "model" decides the JPEG quality offset: a codec built from the module
        name = "modjpeg"

        def __init__(self, module):
            super().__init__()
            self.module_id = id(module)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=4)
    seen = []
    callback = BenchCallback(lambda m: seen.append(m.training) or ModuleCodec(m), "demo", every_n_epochs=1,
                             metrics=["psnr"], rates=[50], limit=1, store=tmp_path / "bench.sqlite")
    logger = CSVLogger(tmp_path / "logs", name="tiny")
    trainer = pl.Trainer(max_epochs=2, callbacks=[callback], logger=logger, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=1,
                         accelerator="cpu", log_every_n_steps=1)
    trainer.fit(Tiny(), data, data)
    assert sorted(callback.results) == [2, 4] and seen == [False, False]  # evaluated in eval mode, each epoch
    import pandas as pd

    metrics = pd.read_csv(next((tmp_path / "logs").rglob("metrics.csv")))
    key = "bench/" + scalar_key("modjpeg", "psnr", "50")
    logged = metrics.dropna(subset=[key])  # at the step of Lightning's own validation values
    assert list(logged["step"]) == list(metrics.dropna(subset=["val_loss"])["step"]) == [1, 3]
    rows = callback.results[4]
    assert np.allclose(logged[key], rows["psnr"].mean()) and rows["run_id"].iloc[0].startswith("demo-")
    from bench.api import load_results

    assert sorted(load_results(tmp_path / "bench.sqlite", codec="modjpeg")["run_id"].unique()) == \
        sorted({callback.results[s]["run_id"].iloc[0] for s in (2, 4)})


def test_wandb_offline_run_files_hold_scalars_figures_crops(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from test_lightning_bench import read_wandb_history

    monkeypatch.setenv("WANDB_MODE", "offline")  # no network: the run is only written to local files
    out = tmp_path / "res"
    assert main(["--out", str(out), *RUN, "--log", f"wandb:{tmp_path / 'wb'}"]) == 0
    (row,) = read_wandb_history(tmp_path / "wb")
    rows = _rows(out)
    assert int(row["_step"]) == 7
    for rate in ("20", "50"):
        for metric in ("psnr", "bpp"):
            expected = rows[rows["rate"] == rate][metric].mean()
            assert float(row[scalar_key("jpeg", metric, rate)]) == pytest.approx(expected, rel=1e-6)
    images = {k.rsplit("/", 1)[0] for k in row if k.startswith(("rd/", "crops/")) and k.endswith("/_type")}
    assert "rd/rd_psnr" in images and len([i for i in images if i.startswith("crops/")]) == 3  # original + 2 crops
