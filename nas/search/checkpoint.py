"""Loading a supernet checkpoint for search, with clear errors for the wrong kind of file."""

from __future__ import annotations

from pathlib import Path

import torch

from nas.checkpointing import read_checkpoint
from nas.errors import check
from nas.samplers.base import LEGACY_KEYS, sampler_spec


def run_dir_of(ckpt: str) -> str:
    """The run directory of a checkpoint (`<run>/checkpoints/x.ckpt` -> `<run>`)."""
    path = Path(str(ckpt)).expanduser().resolve()
    return str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)


def load_supernet_module(ckpt: str, device: torch.device):
    """The `OneShotModule` stored in `ckpt`, on `device`, in eval mode; the space comes from it."""
    from nas.modules import OneShotModule

    path = Path(str(ckpt)).expanduser()
    check(
        path.is_file(),
        f"checkpoint {str(path)!r} does not exist; pass ckpt=<run>/checkpoints/last.ckpt "
        "written by train.py",
    )
    raw = read_checkpoint(path)
    hparams = raw.get("hyper_parameters", {}) if isinstance(raw, dict) else {}
    check(
        isinstance(hparams.get("space"), dict) and "ghost_size" in hparams,
        f"checkpoint {str(path)!r} is not a one-shot supernet checkpoint (no search space in its "
        "hyperparameters); pass a checkpoint written by `train.py` with model=oneshot",
    )
    hparams = {k: v for k, v in hparams.items() if k not in LEGACY_KEYS}
    module = OneShotModule(**{**hparams, "sampler": sampler_spec(raw["hyper_parameters"])})
    module.load_state_dict(raw["state_dict"])
    module.on_load_checkpoint(raw)
    return module.to(device).eval()
