"""Logger factories (W&B is imported only when chosen)."""

from __future__ import annotations

import os

from nas.errors import check

WANDB_MODES = ("auto", "online", "offline", "disabled")


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
