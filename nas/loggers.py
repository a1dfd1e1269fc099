"""Logger factories (W&B is imported only when chosen)."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from nas.errors import check

WANDB_MODES = ("auto", "online", "offline", "disabled")


def sweep_group(mode, sweep_dir: str, experiment: str | None) -> str:
    """W&B group of a run: its experiment, plus the sweep's directory name for a multirun sweep."""
    label = experiment or "run"
    return f"{label}-{Path(str(sweep_dir)).name}" if "MULTIRUN" in str(mode) else label


OmegaConf.register_new_resolver("sweep_group", sweep_group, replace=True)


def wandb_logger(
    project: str = "oneshot-nas",
    name: str | None = None,
    group: str | None = None,
    save_dir: str = ".",
    mode: str = "auto",
    tags: list[str] | None = None,
):
    """A WandbLogger; mode `auto` is online when a login or WANDB_API_KEY exists, else offline."""
    check(
        mode in WANDB_MODES, f"logger.mode={mode!r} is unknown; choose one of {list(WANDB_MODES)}"
    )
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    if mode == "auto":
        mode = "online" if _wandb_logged_in(wandb) else "offline"
    return WandbLogger(
        project=project,
        name=name or None,
        group=group,
        save_dir=save_dir,
        mode=mode,
        tags=list(tags or []),
    )


def _wandb_logged_in(wandb) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return bool(wandb.Api(timeout=5).api_key)
    except Exception:  # no netrc entry, no network: stay offline rather than fail the run
        return False


def finish_wandb() -> None:
    """Close the W&B run (if one is open) so Hydra multirun sweeps do not hang between jobs."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
