"""`result.json` of every training run: written when a run ends, read back by every report.

Every training run ends by writing `<run>/result.json` (`write_run_result`, called by train.py);
Table 1 (`python -m nas.collect`), the ranking-quality report and the studies read the finished
stand-alone runs back from here.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from nas.atomic import write_text
from nas.errors import NasError, check

RESULT = "result.json"
# The keys of a dataset config that say which images it holds; the others (batch sizes, split
# sizes, augmentation) may differ between scoring a supernet and retraining on the same data.
SOURCE_KEYS = ("_target_", "data_dir", "root", "path", "name", "num_classes")


def write_run_result(
    trainer, module, metrics: dict, run_dir: str, dataset: Mapping | None = None
) -> dict:
    """Write `<run_dir>/result.json` (final metrics, size, architecture, the dataset config it was
    trained on) for `python -m nas.collect` and the reports."""
    metrics = {k.replace("/", "_"): float(v) for k, v in metrics.items() if v.numel() == 1}
    h = module.hparams
    result = {
        "kind": type(module).__name__,
        "group": h.get("group"),
        "arch_id": h.get("arch_id"),
        "filters": h.get("filters"),
        "cells": h.get("cells"),
        "params": sum(p.numel() for p in module.parameters()),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        **{k: metrics[k] for k in ("val_acc", "test_acc", "val_loss", "test_loss") if k in metrics},
        "dataset": dict(dataset) if dataset is not None else None,
    }
    if trainer.is_global_zero:
        # Written whole or not at all: collectors scan sweeps whose jobs may still be running.
        write_text(Path(run_dir) / RESULT, json.dumps(result, indent=2) + "\n")
    return result


def finished_standalone_runs(
    directories: Sequence[str], metric: str = "test_acc"
) -> list[tuple[Path, dict]]:
    """(path, contents) of every result.json under `directories` of a stand-alone run with `metric`."""
    found = []
    for directory in directories:
        root = Path(str(directory)).expanduser()
        check(
            root.exists(),
            f"{str(root)!r} does not exist; pass the directory of the retraining sweep "
            "(multirun/<date>/<time>)",
        )
        for path in sorted(root.rglob(RESULT)):
            result = json.loads(path.read_text())
            why = _not_counted(result, metric)
            if why:
                print(f"skipped {path.parent}: {why}", file=sys.stderr)
            else:
                found.append((path, result))
    check(
        bool(found),
        f"no finished stand-alone runs (result.json with {metric}) under {list(directories)}; "
        "retrain the selected architectures first (train.py with a *_standalone experiment)",
    )
    return found


def _not_counted(result: dict, metric: str) -> str | None:
    """Why a run's result does not count as a finished stand-alone run (None: it counts). Every
    module that retrains one architecture records its `arch_id` (StandaloneModule, DARTS's
    evaluation network, the stand-alone language model, ...); supernet runs record none."""
    if not result.get("arch_id"):
        return f"a {result.get('kind', 'training')} run, not the retraining of one architecture"
    if metric not in result:
        return f"no {metric} (not finished, or trained with test_after_fit=false)"
    return None


def data_source(dataset: Mapping | None) -> dict | None:
    """The part of a dataset config that names its images (`SOURCE_KEYS`); None when unknown."""
    if not dataset:
        return None
    return {k: dataset[k] for k in SOURCE_KEYS if dataset.get(k) is not None}


def check_same_data(runs: Sequence[tuple[Path, dict]], dataset: Mapping | None, where: str) -> None:
    """Stop if a run was trained on other images than `dataset` (the store's scoring data).

    Runs of an earlier version record no dataset: they are taken as before, with one warning."""
    source = data_source(dataset)
    if source is None:
        return
    unrecorded = [path.parent for path, result in runs if result.get("dataset") is None]
    for path, result in runs:
        theirs = data_source(result.get("dataset"))
        if theirs is not None and theirs != source:
            changed = sorted(k for k in {*source, *theirs} if source.get(k) != theirs.get(k))
            raise NasError(
                f"run {str(path.parent)!r} was trained on other data than {where} was scored on ("
                + "; ".join(f"{k}: {source.get(k)!r} -> {theirs.get(k)!r}" for k in changed)
                + "); pass the retraining runs of this dataset as --truth"
            )
    if unrecorded:
        print(
            f"warning: {len(unrecorded)} run(s) do not record their dataset (written by an earlier "
            f"version, e.g. {str(unrecorded[0])!r}); taken as trained on {source}",
            file=sys.stderr,
        )


def runs_by_arch(
    directories: Sequence[str],
    known: set[str] | None = None,
    metric: str = "test_acc",
    dataset: tuple[Mapping, str] | None = None,
) -> tuple[dict[str, list[float]], list[str]]:
    """({arch id: metric of each of its runs}, [run dirs whose arch id is not in `known`]).

    `known=None` keeps every architecture (and leaves none unmatched). `dataset`: (the dataset
    config the runs must have been trained on, what it belongs to, for the message).
    """
    values: dict[str, list[float]] = defaultdict(list)
    unmatched = []
    runs = finished_standalone_runs(directories, metric)
    if dataset is not None:
        check_same_data(runs, *dataset)
    for run, result in runs:
        arch_id = result.get("arch_id")
        if known is None or arch_id in known:
            values[arch_id].append(float(result[metric]))
        else:
            unmatched.append(str(run.parent))
    return dict(values), unmatched


def runs_truth(
    directories: Sequence[str],
    known: set[str],
    metric: str = "test_acc",
    dataset: tuple[Mapping, str] | None = None,
) -> tuple[dict[str, float], list[str]]:
    """({arch id: mean metric over its runs}, [run dirs whose arch id is not in `known`])."""
    values, unmatched = runs_by_arch(directories, known, metric, dataset)
    return {a: sum(v) / len(v) for a, v in values.items()}, unmatched
