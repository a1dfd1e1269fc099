"""Checkpoints a killed run can resume from: atomic writes, `last.ckpt`, RNG states, clear errors."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from nas.errors import NasError, check

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside it, fsyncs, then renames it into place.

    A run killed while saving leaves the previous checkpoint intact (and at worst a stray
    `.<name>.<pid>.tmp`), never a truncated one.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any | None = None) -> None:
        if "://" in str(path) or storage_options is not None:  # remote storage: Lightning's own way
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # The rename itself must reach the disk, or a power cut could bring back the old name.
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class LastCheckpoint(Callback):
    """Keeps `<dirpath>/last.ckpt` current: at every epoch's end and every N training steps."""

    def __init__(self, dirpath: str, every_n_train_steps: int = 0) -> None:
        check(
            isinstance(every_n_train_steps, int) and every_n_train_steps >= 0,
            f"callbacks.last.every_n_train_steps={every_n_train_steps!r} must be an integer >= 0 "
            "(0: only at the end of every epoch)",
        )
        self.path = Path(dirpath) / LAST
        self.every_n_train_steps = every_n_train_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = self.every_n_train_steps
        # The epoch's last batch is saved by on_train_epoch_end, after validation, a moment later.
        last_batch = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if n and trainer.global_step % n == 0 and not last_batch:
            self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._save(trainer)

    def _save(self, trainer) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        # Never replace a good checkpoint with weights that overflowed (one check per save).
        params = list(trainer.lightning_module.parameters())
        if not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            raise NasError(
                f"the weights are not finite after step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}): training stopped; {_kept(self.path)}. "
                f"{_hint(trainer.lightning_module)}"
            )
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable


def check_finite_loss(module, loss: torch.Tensor) -> None:
    """Stop training with the step and a hint when `loss` is NaN or infinite.

    On the CPU the flag is read at once, so the optimizer never steps on a bad loss. On a CUDA
    device reading it would stall the host every step (no queueing ahead of the GPU), so the flag is
    copied to pinned memory and read at a later step once the copy has landed: a bad loss stops the
    run a step or two late, and `LastCheckpoint` refuses to save the non-finite weights it leaves.
    """
    if loss.device.type != "cuda":
        _raise_if_bad(
            module, bool(torch.isfinite(loss)), loss.item(), module.trainer.global_step, True
        )
        return
    pending = getattr(module, "_loss_check_pending", None)  # (pinned flag, copy event, step)
    if pending is not None and pending[1].query():
        _raise_if_bad(module, bool(pending[0]), float("nan"), pending[2], False)
        pending = None
    if pending is None:
        flag = torch.empty((), dtype=torch.bool, pin_memory=True)
        flag.copy_(torch.isfinite(loss.detach()), non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        module._loss_check_pending = (flag, event, module.trainer.global_step)


def _raise_if_bad(module, finite: bool, value: float, step: int, before_update: bool) -> None:
    if finite:
        return
    trainer = module.trainer
    last = next((cb.path for cb in trainer.callbacks if isinstance(cb, LastCheckpoint)), None)
    when = (
        "before this step changed the weights" if before_update else "(noticed a step or two later)"
    )
    shown = f"{value}" if before_update else "not finite"
    raise NasError(
        f"the training loss is {shown} at step {step} (epoch {trainer.current_epoch}): training "
        f"stopped {when}; {_kept(last)}. {_hint(module)}"
    )


def _kept(last: Path | None) -> str:
    if last is None or not last.is_file():
        return "no checkpoint had been written yet"
    return f"the last checkpoint, {last}, is kept as it was"


def _hint(module) -> str:
    h = module.hparams
    knobs = [f"model.lr (now {h.lr:g})"]
    sampler = h.get("sampler") or {}
    if "rate" in sampler:
        knobs.append(f"sampler.rate (now {sampler['rate']:g})")
    return f"Lower {' or '.join(knobs)} or add model.warmup_steps, and start a new run"


class RngStates(Callback):
    """Saves the global RNGs (torch, CUDA, Python, NumPy) in checkpoints and restores them on resume.

    Augmentation draws from torch's global RNG, so a resumed run must continue its stream exactly.
    States are stored as tensors and tuples, so checkpoints still load with `weights_only=True`.
    """

    def __init__(self) -> None:
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        # Applied here, after all setup, so nothing drawn while building the run disturbs the stream.
        state, self._pending = self._pending, None
        if not state:
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        random.setstate(state["python"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


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
