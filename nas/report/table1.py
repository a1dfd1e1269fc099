"""The paper's Table 1 from finished stand-alone runs: `python -m nas.collect multirun/<dir>`.

Table 1 reports mean ± *sample* standard deviation (ddof = 1, as numpy's `std(ddof=1)`) over the
runs of a (group, filters) cell, beside the standard error of the mean accuracy (std / sqrt(n)) and
n, which a comparison of two groups needs; a cell with a single run shows the mean alone, like the
paper's "All On" row. The runs are the `result.json` files of `nas.report.runs`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence

from nas.atomic import write_text
from nas.errors import NasError, check
from nas.report.markdown import markdown_table
from nas.report.runs import finished_standalone_runs
from nas.report.stats import mean_std

# The paper's row order; any other group follows in order of first appearance.
PAPER_GROUPS = ("One-Shot Top", "One-Shot Small", "All On", "Random")
# `python -m nas.collect --help` (the words of the command's docstring before it moved here)
DESCRIPTION = """Collect finished stand-alone runs into the paper's Table 1: `python -m nas.collect multirun/<dir>`.

Every training run ends by writing `<run>/result.json` (`write_run_result`, called by train.py); this
module reads them back, for the table here and for the studies.
"""


def table1_rows(rows: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    """Table 1 as plain dicts (for CSV/JSON): one per (group, filters), params in M, accuracy in %.

    Keys: group, filters (None when not given), n, params_m_mean, params_m_std, test_acc_pct_mean,
    test_acc_pct_std, test_acc_pct_se; the stds are sample stds, the standard error std / sqrt(n)
    (what a comparison of two groups' means needs), all None when n = 1.
    """
    cells: dict[tuple[str, int | None], list[tuple[float, float]]] = {}
    for i, row in enumerate(rows):
        missing = {"group", "params", "test_acc"} - set(row)
        check(
            not missing,
            f"table1 row {i} lacks key(s) {sorted(missing)}; need group, params, test_acc",
        )
        params, acc = float(row["params"]), float(row["test_acc"])
        check(
            params > 0 and math.isfinite(params),
            f"table1 row {i}: params must be a positive count, got {params}",
        )
        check(
            0.0 <= acc <= 1.0,
            f"table1 row {i}: test_acc must be a fraction in [0, 1], got {acc}; "
            "divide percentages by 100",
        )
        filters = row.get("filters")
        key = (str(row["group"]), None if filters is None else int(filters))
        cells.setdefault(key, []).append((params, acc))
    first_seen: dict[str, int] = {}
    for group, _ in cells:
        first_seen.setdefault(group, len(first_seen))

    def order(key: tuple[str, int | None]) -> tuple[int, int, int, int]:
        group, filters = key
        rank = PAPER_GROUPS.index(group) if group in PAPER_GROUPS else len(PAPER_GROUPS)
        return (rank, first_seen[group], filters is None, filters or 0)

    out = []
    for key in sorted(cells, key=order):
        runs = cells[key]
        p_mean, p_std = mean_std([p / 1e6 for p, _ in runs])
        a_mean, a_std = mean_std([100.0 * a for _, a in runs])
        out.append(
            dict(
                group=key[0],
                filters=key[1],
                n=len(runs),
                params_m_mean=p_mean,
                params_m_std=p_std,
                test_acc_pct_mean=a_mean,
                test_acc_pct_std=a_std,
                test_acc_pct_se=None if a_std is None else a_std / math.sqrt(len(runs)),
            )
        )
    return out


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def table1(rows: Sequence[Mapping[str, object]]) -> str:
    """The paper's Table 1 in Markdown: per (group, filters) params (M), test acc (%) as mean ± std,
    the standard error of that mean, and n."""
    lines = [
        {
            "group": r["group"],
            "filters": "—" if r["filters"] is None else r["filters"],
            "params (M)": _pm(r["params_m_mean"], r["params_m_std"]),
            "test acc (%)": _pm(r["test_acc_pct_mean"], r["test_acc_pct_std"]),
            "s.e. (%)": "—" if r["test_acc_pct_se"] is None else f"{r['test_acc_pct_se']:.2f}",
            "n": r["n"],
        }
        for r in table1_rows(rows)
    ]
    check(len(lines) >= 1, "table1 needs at least one finished run, got none")
    return markdown_table(lines)


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
    parser = argparse.ArgumentParser(description=DESCRIPTION)
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
