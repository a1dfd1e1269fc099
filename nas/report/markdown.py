"""Markdown pages: one page of headings, text, figures, tables and numbers.

Number formatting is fixed so reports diff cleanly: floats to 4 significant digits (`.4g`),
integers in full.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

from nas.atomic import write_text
from nas.errors import check


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
