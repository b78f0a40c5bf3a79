"""Weights & Biases as a bench tracker (``--log wandb[:DIR]``).

One ``wandb.init`` run per tracker (created on the first write, project ``bench``, files under
``DIR``, default ``<results>/wandb``): each write logs the scalars (``<codec>/<metric>/rate_<rate>``),
the crops (``crops/<name>``) as images at the run's step and the RD figures (``rd/<name>``)
at the last step, when the tracker closes, so a
training or a sweep gives metric histories. The run's config holds the first run's metadata.
Mode: ``WANDB_MODE`` when set (``offline`` writes only local files, for ``wandb sync`` later),
else ``online`` when an API key is configured (``WANDB_API_KEY`` or ``wandb login``'s netrc
entry) and ``offline`` otherwise — never a login prompt.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.integrations.tracking import Payload, Tracker, missing_package


def wandb_mode() -> str:
    """``WANDB_MODE``, else online with a configured API key, else offline."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode:
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "online" if "api.wandb.ai" in netrc.read_text(errors="replace") else "offline"
    except OSError:
        return "offline"


def _pixels(fig: Any) -> Any:
    """A matplotlib figure as an H×W×3 uint8 array (drawn with its own Agg canvas)."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


class WandbTracker(Tracker):
    """One wandb run in ``directory`` (see the module docstring)."""

    kind = "wandb"

    def __init__(self, directory: str | Path, *, project: str = "bench", run_name: str | None = None) -> None:
        try:
            import wandb
        except ImportError:
            raise missing_package("wandb") from None
        self.wandb = wandb
        self.directory = Path(directory)
        self.project = project
        self.run_name = run_name
        self.run: Any = None
        self._unnamed = False

    def _init(self, name: str | None, config: dict[str, str]) -> None:
        wandb = self.wandb
        self.directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=self.project, dir=str(self.directory), name=name, config=config,
                              mode=wandb_mode(), reinit="create_new", settings=wandb.Settings(silent=True, console="off"))

    def prepare(self) -> None:
        """Start wandb's service and its run now (named and configured by the first write)."""
        if self.run is None:
            self._init(self.run_name, {})
            self._unnamed = True
        super().prepare()

    def write(self, data: Payload) -> None:
        wandb = self.wandb
        if self.run is None:
            self._init(self.run_name or data.run_id, dict(data.params))
        elif self._unnamed:  # started by prepare(): the first run names it and gives its config
            self.run.name = self.run_name or data.run_id
            self.run.config.update(dict(data.params))
        self._unnamed = False
        row: dict[str, Any] = dict(data.scalars)
        row.update({f"crops/{name}": wandb.Image(image) for name, image in data.images.items()})
        self.keep_figures(data)
        self.run.log(row, step=data.step)
        self.run.summary["bench.run_id"] = data.run_id

    def close(self) -> None:
        if self.run is not None:
            step, figures = self.flush_figures()
            if figures:  # at the last step: wandb takes no step below its current one
                self.run.log({f"rd/{name}": self.wandb.Image(_pixels(fig)) for name, fig in figures.items()},
                             step=step)
            self.run.finish()
            self.run = None
