"""Collect finished stand-alone runs into the paper's Table 1: `python -m nas.collect multirun/<dir>`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nas.analysis.report import table1, table1_rows
from nas.errors import NasError, check

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
    for directory in directories:
        root = Path(directory)
        check(
            root.exists(),
            f"{str(root)!r} does not exist; pass the multirun directory of the retraining sweep",
        )
        for path in sorted(root.rglob("result.json")):
            result = json.loads(path.read_text())
            if result.get("kind") != "StandaloneModule" or "test_acc" not in result:
                continue
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
    check(
        bool(rows), f"no finished stand-alone runs (result.json with test_acc) under {directories}"
    )
    return rows


def main(argv: list[str] | None = None) -> int:
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
        Path(args.json).write_text(json.dumps(table1_rows(rows), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
