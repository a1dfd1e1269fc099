"""Saving checkpoints: whole or not at all (`AtomicCheckpointIO`), and the resume point `last.ckpt`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from nas.atomic import atomic_path, remove_stale_temp_files
from nas.checkpointing.messages import checkpoint_note, remedy_hint
from nas.errors import NasError, check

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside it, fsyncs, then renames it into place.

    A run killed while saving leaves the previous checkpoint intact (and at worst a stray
    `.<name>.<pid>.tmp`, removed by `LastCheckpoint` at the next start), never a truncated one.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any | None = None) -> None:
        if "://" in str(path) or storage_options is not None:  # remote storage: Lightning's own way
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path, durable=True) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)


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

    def setup(self, trainer, pl_module, stage: str) -> None:
        # A run killed while saving leaves `.<name>.<pid>.tmp` files; clear those of dead writers
        # (one process only: ranks share the directory).
        if stage == "fit" and trainer.is_global_zero:
            remove_stale_temp_files(self.path.parent)

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
                f"{trainer.current_epoch}): training stopped; {checkpoint_note(self.path)}. "
                f"{remedy_hint(trainer.lightning_module)}"
            )
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable
