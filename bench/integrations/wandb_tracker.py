"""Weights & Biases as a bench tracker (``--log wandb[:DIR]``).

One ``wandb.init`` run per tracker (created on the first write, project ``bench``, files under
``DIR``, default ``<results>/wandb``): each write logs the scalars (``<codec>/<metric>/rate_<rate>``),
the RD figures (``rd/<name>``) and crops (``crops/<name>``) as images at the run's step, so a
training or a sweep gives metric histories. The run's config holds the first run's metadata.
Mode: ``WANDB_MODE`` when set (``offline`` writes only local files, for ``wandb sync`` later),
else ``online`` when an API key is configured (``WANDB_API_KEY`` or ``wandb login``'s netrc
entry) and ``offline`` otherwise — never a login prompt.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .trackers import Payload, Tracker, missing_package


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

    def write(self, data: Payload) -> None:
        wandb = self.wandb
        if self.run is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(project=self.project, dir=str(self.directory), name=self.run_name or data.run_id,
                                  config=dict(data.params), mode=wandb_mode(), reinit="create_new",
                                  settings=wandb.Settings(silent=True, console="off"))
        row: dict[str, Any] = dict(data.scalars)
        row.update({f"rd/{name}": wandb.Image(fig) for name, fig in data.figures.items()})
        row.update({f"crops/{name}": wandb.Image(image) for name, image in data.images.items()})
        self.run.log(row, step=data.step)
        self.run.summary["bench.run_id"] = data.run_id

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
