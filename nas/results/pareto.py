"""The Pareto front of a search: the architectures that no other beats on one-shot accuracy and a
cost (params, MACs, predicted latency) at once, as `pareto.csv`, `pareto.png` and a selection.

Architecture b dominates a when b is at least as accurate and at most as costly, and strictly
better in one of the two; the front is every architecture nothing dominates (two with the same
accuracy and cost are both on it). Rows are dicts as `ResultsStore.ranking()` gives them, with
`latency_ms` added when the search had a latency table.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from nas.atomic import atomic_path
from nas.errors import check
from nas.plotting import SIZE_IN, new_figure, save_png

COSTS = ("params", "macs", "latency_ms")
LABELS = {"params": "parameters", "macs": "MACs", "latency_ms": "predicted latency (ms)"}
Row = Mapping


def pareto_front(rows: Sequence[Row], cost: str) -> list[Row]:
    """The non-dominated rows (maximise `oneshot_acc`, minimise `cost`), cheapest first; rows
    without a value of `cost` take no part."""
    check(cost in COSTS, f"Pareto cost {cost!r} is not one of {list(COSTS)}")
    ordered = sorted(
        (r for r in rows if r.get(cost) is not None),
        key=lambda r: (float(r[cost]), -float(r["oneshot_acc"])),
    )
    front: list[Row] = []
    best_cheaper = -math.inf  # best accuracy of every strictly cheaper row
    for _, group in itertools.groupby(ordered, key=lambda r: float(r[cost])):
        group = list(group)
        best_here = float(group[0]["oneshot_acc"])  # the group is sorted most accurate first
        if best_here > best_cheaper:  # else a cheaper row is at least as accurate
            front += [r for r in group if float(r["oneshot_acc"]) == best_here]
        best_cheaper = max(best_cheaper, best_here)
    return front


def spread(front: Sequence[Row], k: int) -> list[Row]:
    """`k` rows spread evenly along `front` (cheapest and most accurate included); all if fewer."""
    check(isinstance(k, int) and k >= 1, f"selection k={k!r} must be an integer >= 1")
    n = len(front)
    if n <= k:
        return list(front)
    if k == 1:
        return [front[-1]]  # the most accurate
    return [front[round(i * (n - 1) / (k - 1))] for i in range(k)]


def write_pareto(
    rows: Sequence[Row], out_dir: str | Path, limits: Mapping[str, float] | None = None
) -> tuple[dict[str, list[Row]], Path, Path | None]:
    """The front of every cost the rows have, `pareto.csv` (the union of the fronts, most
    accurate first, one `on_<cost>_front` column per cost) and `pareto.png` (one panel per cost;
    a budget's limits as dashed lines; not drawn for a single row). Returns (cost -> front, csv
    path, png path or None)."""
    out = Path(out_dir)
    costs = [c for c in COSTS if rows and all(r.get(c) is not None for r in rows)]
    fronts = {c: pareto_front(rows, c) for c in costs}
    on = {c: {r["arch_id"] for r in front} for c, front in fronts.items()}
    members = [r for r in rows if any(r["arch_id"] in ids for ids in on.values())]
    members.sort(key=lambda r: -float(r["oneshot_acc"]))
    fields = ["arch_id", "oneshot_acc", *costs, *(f"on_{c}_front" for c in costs), "arch_json"]
    with atomic_path(out / "pareto.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in members:
            flags = [int(r["arch_id"] in on[c]) for c in costs]
            writer.writerow(
                [r["arch_id"], r["oneshot_acc"], *(r[c] for c in costs), *flags, r["arch_json"]]
            )
    # One architecture (a method's derived one) has no trade-off to draw.
    figure = plot_pareto(rows, fronts, out / "pareto.png", limits or {}) if len(rows) > 1 else None
    return fronts, out / "pareto.csv", figure


def plot_pareto(
    rows: Sequence[Row], fronts: Mapping[str, list[Row]], path: str | Path, limits: Mapping
) -> Path:
    """One panel per cost: every architecture (grey), its front (a staircase), the limit if any."""
    costs = list(fronts)
    fig = new_figure(SIZE_IN[0] * max(1, len(costs)) * 0.75, SIZE_IN[1])
    for i, cost in enumerate(costs):
        ax = fig.add_subplot(1, len(costs), i + 1)
        ax.scatter(
            [float(r[cost]) for r in rows],
            [float(r["oneshot_acc"]) for r in rows],
            s=6,
            color="0.7",
            label=f"scored ({len(rows):,})",
        )
        front = fronts[cost]
        ax.step(
            [float(r[cost]) for r in front],
            [float(r["oneshot_acc"]) for r in front],
            where="post",
            color="tab:red",
            marker="o",
            markersize=3,
            label=f"Pareto front ({len(front)})",
        )
        if limits.get(cost) is not None:
            ax.axvline(float(limits[cost]), color="tab:blue", linestyle="--", label="budget")
        ax.set_xlabel(LABELS[cost])
        ax.set_ylabel("one-shot validation accuracy")
        ax.legend(fontsize=7, loc="lower right")
    if not costs:
        fig.add_subplot().text(0.5, 0.5, "no costs recorded", ha="center")
    return save_png(fig, path)
