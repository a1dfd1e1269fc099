"""Shared plumbing of the studies: reading stores, checkpoints and finished runs; writing numbers."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from nas.atomic import write_text
from nas.checkpointing import read_checkpoint
from nas.collect import finished_standalone_runs
from nas.errors import check
from nas.results.store import ResultsStore
from nas.spaces import Architecture, SearchSpace, build_space


def open_store(store: str) -> tuple[list[dict], SearchSpace, dict]:
    """(rows in proposal order, the space, the checkpoint's hyperparameters) of a results store."""
    path = Path(str(store)).expanduser()
    check(
        path.is_file(),
        f"results store {str(path)!r} does not exist; pass <run>/search/<strategy>-seed<seed>/"
        "results.sqlite written by search.py",
    )
    with ResultsStore(path) as db:
        rows, spec, ckpt = db.results(), db.get_meta("space_spec"), db.get_meta("checkpoint")
    check(bool(rows), f"results store {str(path)!r} is empty; run search.py first")
    check(spec is not None, f"results store {str(path)!r} records no search space")
    return rows, build_space(spec), checkpoint_hparams(ckpt) if ckpt else {}


def checkpoint_hparams(ckpt: str) -> dict:
    """The hyperparameters saved in a checkpoint (plain values), or {} if the file is gone."""
    path = Path(str(ckpt)).expanduser()
    if not path.is_file():  # stores outlive their checkpoints; the studies say what they lack
        return {}
    return dict(read_checkpoint(path).get("hyper_parameters", {}))


def arch_of(row: dict, space: SearchSpace) -> Architecture:
    """The Architecture of a results-store row."""
    return Architecture.from_json(row["arch_json"], space)


def standalone_results(runs: Sequence[str], metric: str = "test_acc") -> dict[str, list[float]]:
    """{arch_id: [metric of every finished stand-alone run]} from every result.json under `runs`."""
    found: dict[str, list[float]] = defaultdict(list)
    for _, result in finished_standalone_runs(runs, metric):
        found[result["arch_id"]].append(float(result[metric]))
    return dict(found)


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
