"""Markdown reports: one page of headings, text, figures, tables and numbers; the paper's Table 1.

Number formatting is fixed so reports diff cleanly: floats to 4 significant digits (`.4g`),
integers in full. Table 1 reports mean ± *sample* standard deviation (ddof = 1, as numpy's
`std(ddof=1)`) over the runs of a (group, filters) cell; a cell with a single run shows the mean
alone, like the paper's "All On" row.
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from nas.atomic import write_text
from nas.errors import check

# The paper's row order; any other group follows in order of first appearance.
PAPER_GROUPS = ("One-Shot Top", "One-Shot Small", "All On", "Random")


def format_number(value: object) -> str:
    """Integers in full, other reals to 4 significant digits, None as n/a, anything else via `str`."""
    if value is None:  # a value that does not exist, e.g. the spread of a single run
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):.4g}"


def _is_numeric(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def markdown_table(rows: Sequence[Mapping[str, object]]) -> str:
    """A Markdown table of `rows` (columns in order of first appearance), padded to align columns.

    Columns whose values are all numbers (None shows as n/a) are right-aligned; missing cells are
    left empty.
    """
    check(len(rows) >= 1, "markdown_table needs at least one row, got none")
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    numeric = {c: all(_is_numeric(r[c]) for r in rows if r.get(c) is not None) for c in columns}
    # A literal "|" would end the cell early; Markdown's escape keeps it as text.
    cells = [[format_number(r.get(c, "")).replace("|", r"\|") for c in columns] for r in rows]
    header = [str(c).replace("|", r"\|") for c in columns]
    widths = [max(3, len(h), *(len(line[j]) for line in cells)) for j, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        padded = [
            v.rjust(w) if numeric[c] else v.ljust(w)
            for v, w, c in zip(values, widths, columns, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        ("-" * (w - 1) + ":") if numeric[c] else "-" * w
        for w, c in zip(widths, columns, strict=True)
    ]
    return "\n".join([line(header), "| " + " | ".join(rule) + " |", *(line(c) for c in cells)])


def write_report(path: str | Path, title: str, sections: Sequence[Mapping[str, object]]) -> Path:
    """Write one Markdown page: a title, then per section its heading, text, image, table, numbers.

    Each section is a dict with `heading` and optional `text`, `image` (a PNG path relative to the
    report), `table` (a list of row dicts) and `numbers` (a dict name -> value, shown as bullets).
    """
    allowed = {"heading", "text", "image", "table", "numbers"}
    parts = [f"# {title}", ""]
    for i, section in enumerate(sections):
        check(
            "heading" in section,
            f"report section {i} has no 'heading'; every section needs one",
        )
        unknown = set(section) - allowed
        check(
            not unknown,
            f"report section {i} has unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}",
        )
        parts += [f"## {section['heading']}", ""]
        if section.get("text"):
            parts += [str(section["text"]).strip(), ""]
        if section.get("image"):
            image = Path(str(section["image"]))
            check(
                not image.is_absolute(),
                f"report image {str(image)!r} is absolute; give it relative to the report's folder "
                "so the page still renders when the folder is moved",
            )
            parts += [f"![{section['heading']}]({image.as_posix()})", ""]
        if section.get("table"):
            parts += [markdown_table(section["table"]), ""]
        if section.get("numbers"):
            numbers_ = section["numbers"]
            parts += [f"- **{k}**: {format_number(v)}" for k, v in numbers_.items()] + [""]
    return write_text(path, "\n".join(parts).rstrip() + "\n")


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample std (None for a single value, where the sample std is undefined)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def table1_rows(rows: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    """Table 1 as plain dicts (for CSV/JSON): one per (group, filters), params in M, accuracy in %.

    Keys: group, filters (None when not given), n, params_m_mean, params_m_std, test_acc_pct_mean,
    test_acc_pct_std; the stds are sample stds and None when n = 1.
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
            )
        )
    return out


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def table1(rows: Sequence[Mapping[str, object]]) -> str:
    """The paper's Table 1 in Markdown: per (group, filters) params (M), test acc (%) and n."""
    lines = [
        {
            "group": r["group"],
            "filters": "—" if r["filters"] is None else r["filters"],
            "params (M)": _pm(r["params_m_mean"], r["params_m_std"]),
            "test acc (%)": _pm(r["test_acc_pct_mean"], r["test_acc_pct_std"]),
            "n": r["n"],
        }
        for r in table1_rows(rows)
    ]
    check(len(lines) >= 1, "table1 needs at least one finished run, got none")
    return markdown_table(lines)
