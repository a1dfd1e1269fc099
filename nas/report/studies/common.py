"""Shared plumbing of the studies: checkpoints' hyperparameters, stored architectures; JSON numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

from nas.atomic import write_text
from nas.checkpointing import read_checkpoint
from nas.errors import check
from nas.spaces import Architecture, SearchSpace


def checkpoint_hparams(ckpt: str | None) -> dict:
    """The hyperparameters saved in a checkpoint (plain values), or {} if the file is gone."""
    if not ckpt:  # the store recorded no checkpoint
        return {}
    path = Path(str(ckpt)).expanduser()
    if not path.is_file():  # stores outlive their checkpoints; the studies say what they lack
        return {}
    return dict(read_checkpoint(path).get("hyper_parameters", {}))


def arch_of(row: dict, space: SearchSpace) -> Architecture:
    """The Architecture of a results-store row."""
    return Architecture.from_json(row["arch_json"], space)


def clean(value):
    """`value` with NaN/Inf replaced by None (strict JSON), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def write_json(path: str | Path, data: dict) -> Path:
    """Write `data` as indented strict JSON (NaN -> null), creating the folder, atomically."""
    return write_text(path, json.dumps(clean(data), indent=2, allow_nan=False) + "\n")


def read_json(path: str | Path, what: str) -> dict:
    """A JSON file written by an earlier step, with a clear error naming the step if missing."""
    path = Path(str(path)).expanduser()
    check(path.is_file(), f"{str(path)!r} does not exist; run {what} first")
    return json.loads(path.read_text())
