"""Checkpoints a killed run can resume from: atomic writes, `last.ckpt`, RNG states, clear errors.

One module per concern; every name is importable from `nas.checkpointing` itself (the configs name
`nas.checkpointing.LastCheckpoint`).
"""

from nas.checkpointing.finite import check_finite_loss
from nas.checkpointing.resume import (
    check_same_run,
    keep_csv_history,
    read_checkpoint,
    resume_path,
    run_dir_for,
)
from nas.checkpointing.rng import RngStates
from nas.checkpointing.saving import LAST, AtomicCheckpointIO, LastCheckpoint

__all__ = [
    "LAST",
    "AtomicCheckpointIO",
    "LastCheckpoint",
    "RngStates",
    "check_finite_loss",
    "check_same_run",
    "keep_csv_history",
    "read_checkpoint",
    "resume_path",
    "run_dir_for",
]
