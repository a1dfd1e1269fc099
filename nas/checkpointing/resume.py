"""Continuing a run: which checkpoint, which directory, and whether it matches this run's settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from nas.checkpointing.saving import LAST
from nas.errors import NasError, check


def read_checkpoint(path: str | Path) -> dict:
    """A Lightning checkpoint's contents (safe loading); a missing or damaged file is a NasError."""
    path = Path(str(path)).expanduser()
    check(path.is_file(), f"checkpoint {str(path)!r} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or pickled objects we will not execute
        raise NasError(
            f"checkpoint {str(path)!r} cannot be read ({type(err).__name__}: {str(err)[:200]}); "
            "it may be damaged or not a Lightning checkpoint"
        ) from None
    check(
        isinstance(raw, dict) and "state_dict" in raw,
        f"checkpoint {str(path)!r} is not a Lightning checkpoint (no 'state_dict' in it)",
    )
    return raw


def resume_path(resume: bool | str | None, run_dir: str | Path) -> Path | None:
    """The checkpoint that `resume` names: true = this run's last.ckpt; a run directory; a file."""
    if resume is None or resume is False:
        return None
    if resume is True:
        path = Path(run_dir) / "checkpoints" / LAST
    else:
        given = Path(str(resume)).expanduser()
        path = given / "checkpoints" / LAST if given.is_dir() else given
    check(
        path.is_file(),
        f"resume={resume!r}: there is no checkpoint {str(path)!r} to continue; pass the directory "
        "of the run to continue (resume=outputs/<date>/<time>) or one of its checkpoints",
    )
    return path


def run_dir_for(resume, default: str) -> str:
    """hydra.run.dir: the run that `resume=<dir or ckpt>` continues, else `default` (a new one)."""
    if not isinstance(resume, str) or resume.lower() in ("true", "false", "null", "none", ""):
        return default
    path = Path(resume).expanduser()
    if path.is_dir() or path.suffix != ".ckpt":
        return str(path)
    return str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)


def keep_csv_history(logger) -> Path | None:
    """Before a resumed run logs, move its CSV curve aside (`metrics.part<k>.csv`), not deleted.

    Lightning's CSV logger deletes an existing metrics.csv in its directory when it starts.
    """
    from lightning.pytorch.loggers import CSVLogger

    if not isinstance(logger, CSVLogger):
        return None
    current = Path(logger.log_dir) / "metrics.csv"
    if not current.is_file():
        return None
    part = 1
    while (kept := current.with_name(f"metrics.part{part}.csv")).exists():
        part += 1
    os.replace(current, kept)
    return kept


def check_same_run(raw: Mapping, module, path: str | Path) -> None:
    """Stop unless the checkpoint holds the same kind of model with the same settings as `module`."""
    saved, current = _plain(raw.get("hyper_parameters", {})), _plain(dict(module.hparams))
    kind = {True: "a one-shot supernet", False: "a stand-alone network"}
    check(
        ("space" in saved) == ("space" in current),
        f"checkpoint {str(path)!r} holds {kind['space' in saved]}, but this run trains "
        f"{kind['space' in current]}; resume it with the experiment that wrote it",
    )
    differ = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    check(
        not differ,
        f"checkpoint {str(path)!r} was written with other model settings: "
        + "; ".join(
            f"{k}: {_short(saved.get(k))} there, {_short(current.get(k))} here" for k in differ
        )
        + ". Resume with the settings of the run you continue (see its .hydra/overrides.yaml)",
    )


def _plain(value):
    """Dicts and lists of plain values (tuples as lists), so saved and live settings compare."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
