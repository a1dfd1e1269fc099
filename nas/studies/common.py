"""Shared plumbing of the studies: reading stores, checkpoints and finished runs; writing numbers."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from nas.errors import NasError, check
from nas.search.store import ResultsStore
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
    if not path.is_file():
        return {}
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise NasError(f"checkpoint {str(path)!r} cannot be read ({type(err).__name__})") from None
    return dict(raw.get("hyper_parameters", {})) if isinstance(raw, dict) else {}


def arch_of(row: dict, space: SearchSpace) -> Architecture:
    """The Architecture of a results-store row."""
    return Architecture.from_json(row["arch_json"], space)


def standalone_results(runs: Sequence[str], metric: str = "test_acc") -> dict[str, list[float]]:
    """{arch_id: [metric of every finished stand-alone run]} from every result.json under `runs`."""
    found: dict[str, list[float]] = defaultdict(list)
    for directory in runs:
        root = Path(str(directory)).expanduser()
        check(root.exists(), f"{str(root)!r} does not exist; pass the retraining sweep's directory")
        for path in sorted(root.rglob("result.json")):
            result = json.loads(path.read_text())
            if result.get("kind") == "StandaloneModule" and metric in result:
                found[result["arch_id"]].append(float(result[metric]))
    check(
        bool(found),
        f"no finished stand-alone runs (result.json with {metric}) under {list(runs)}; "
        "retrain the picked architectures first",
    )
    return dict(found)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), as Table 1 reports them."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


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
    """Write `data` as indented strict JSON (NaN -> null), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(data), indent=2, allow_nan=False) + "\n")
    return path


def read_json(path: str | Path, what: str) -> dict:
    """A JSON file written by an earlier step, with a clear error naming the step if missing."""
    path = Path(str(path)).expanduser()
    check(path.is_file(), f"{str(path)!r} does not exist; run {what} first")
    return json.loads(path.read_text())
