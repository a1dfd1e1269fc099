"""Collect finished stand-alone runs into the paper's Table 1: `python -m nas.collect multirun/<dir>`.

Every training run ends by writing `<run>/result.json` (`write_run_result`, called by train.py); this
module reads them back, for the table here and for the studies.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from nas.analysis.report import table1, table1_rows
from nas.atomic import write_text
from nas.errors import NasError, check

RESULT = "result.json"


def write_run_result(trainer, module, metrics: dict, run_dir: str) -> dict:
    """Write `<run_dir>/result.json` (final metrics, size, architecture) for `python -m nas.collect`."""
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
            if result.get("kind") == "StandaloneModule" and metric in result:
                found.append((path, result))
    check(
        bool(found),
        f"no finished stand-alone runs (result.json with {metric}) under {list(directories)}; "
        "retrain the selected architectures first (train.py with a *_standalone experiment)",
    )
    return found


# selection file prefixes (search.py) -> the paper's row labels
GROUP_LABELS = {
    "top": "One-Shot Top",
    "small": "One-Shot Small",
    "allon": "All On",
    "random": "Random",
}


def collect(directories: list[str]) -> list[dict]:
    """Rows (group, filters, params, test_acc, arch_id) of every result.json under `directories`."""
    rows = []
    for path, result in finished_standalone_runs(directories, "test_acc"):
        group = result.get("group") or "ungrouped"
        rows.append(
            {
                "group": GROUP_LABELS.get(group, group),
                "filters": result.get("filters"),
                "params": result["params"],
                "test_acc": result["test_acc"],
                "arch_id": result.get("arch_id"),
                "run": str(path.parent),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print Table 1 of the runs under the given directories (and write it as JSON if asked)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directories", nargs="+", help="multirun (or run) directories to scan")
    parser.add_argument("--json", help="also write the table rows to this JSON file")
    args = parser.parse_args(argv)
    try:
        rows = collect(args.directories)
    except NasError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table1(rows))
    if args.json:
        write_text(args.json, json.dumps(table1_rows(rows), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
