"""Loading a supernet checkpoint for search, with clear errors for the wrong kind of file."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import torch

from nas.checkpointing import read_checkpoint
from nas.errors import NasError, check
from nas.samplers.base import LEGACY_KEYS, sampler_spec


def run_dir_of(ckpt: str) -> str:
    """The run directory of a checkpoint (`<run>/checkpoints/x.ckpt` -> `<run>`); a directory of
    several supernets (e.g. a sweep of few-shot sub-supernets) is its own."""
    path = Path(str(ckpt)).expanduser().resolve()
    if path.is_dir():
        return str(path)
    return str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)


def load_supernet_module(ckpt: str, device: torch.device):
    """The `OneShotModule` stored in `ckpt`, on `device`, in eval mode; the space comes from it."""
    path = Path(str(ckpt)).expanduser()
    check(
        path.is_file(),
        f"checkpoint {str(path)!r} does not exist; pass ckpt=<run>/checkpoints/last.ckpt "
        "written by train.py",
    )
    raw = read_checkpoint(path)
    hparams = raw.get("hyper_parameters", {}) if isinstance(raw, dict) else {}
    check(
        not str(raw.get("module_class", "")).endswith("ENASRNNModule"),
        f"checkpoint {str(path)!r} is an ENAS recurrent (language-model) run: it derives its cells "
        "itself at the end of training, into <run>/search/controller/ (ranking.csv, selections); "
        "retrain one with experiment=quickstart_enas_rnn_standalone arch=<selection json>",
    )
    check(
        isinstance(hparams.get("space"), dict) and "ghost_size" in hparams,
        f"checkpoint {str(path)!r} is not a one-shot supernet checkpoint (no search space in its "
        "hyperparameters); pass a checkpoint written by `train.py` with model=oneshot",
    )
    cls = _module_class(raw.get("module_class"), path)
    kwargs = {k: v for k, v in hparams.items() if k not in LEGACY_KEYS}
    if "sampler" in inspect.signature(cls).parameters:
        kwargs["sampler"] = sampler_spec(raw["hyper_parameters"])
    if "load_parent" in inspect.signature(cls).parameters:  # its own weights are loaded next
        kwargs["load_parent"] = False
    module = cls(**kwargs)
    module.load_state_dict(raw["state_dict"])
    module.on_load_checkpoint(raw)
    return module.to(device).eval()


def _module_class(name: str | None, path: Path):
    """The training module a checkpoint names (one of this project's); OneShotModule if none."""
    from nas.modules import OneShotModule

    if name is None:  # written before other methods existed
        return OneShotModule
    module, _, attr = name.rpartition(".")
    check(
        name.startswith("nas."),
        f"checkpoint {str(path)!r} names module class {name!r}, which is not one of this "
        "project's; pass a checkpoint written by train.py",
    )
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        raise NasError(
            f"checkpoint {str(path)!r} was written by {name}, which this version does not have"
        ) from None
    check(
        isinstance(cls, type) and issubclass(cls, OneShotModule),
        f"checkpoint {str(path)!r} holds a {name}, not a supernet; search needs a supernet checkpoint",
    )
    return cls
