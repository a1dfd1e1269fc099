"""A search's outputs from its results store: ranking CSV, histogram, selections and a summary.

Every producer of results writes them this one way: `search.py`, the merge of shards, and the
methods that derive their own architectures (`nas.results.derived`), so retraining and Table 1
read them all alike.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from nas.atomic import remove_stale_temp_files, write_text
from nas.errors import check
from nas.latency import LatencyTable
from nas.plotting import new_figure, save_png, vector
from nas.results.pareto import COSTS, spread, write_pareto
from nas.results.selection import (
    all_on,
    one_shot_small,
    one_shot_top,
    random_group,
    to_archs,
    write_selection,
)
from nas.results.store import ResultsStore
from nas.spaces.base import Architecture

console = Console(stderr=True)


def plot_histogram(
    accuracies: Sequence[float],
    path: str | Path,
    title: str = "One-shot accuracy of sampled architectures",
    bins: int = 50,
) -> Path:
    """Histogram of one-shot validation accuracies (paper Fig. 5, bottom)."""
    acc = vector(accuracies, "accuracies")
    fig = new_figure()
    ax = fig.add_subplot()
    ax.hist(acc, bins=bins, color="tab:blue", edgecolor="white", linewidth=0.3)
    ax.set_xlabel("one-shot validation accuracy")
    ax.set_ylabel("architectures")
    ax.set_title(f"{title} (n = {acc.size})", fontsize=10)
    return save_png(fig, path)


def write_outputs(
    store: ResultsStore,
    space,
    out_dir: str,
    k: int = 10,
    top: int = 100,
    percentile: float = 90,
    seed: int = 0,
    pareto_cost: str = "params",
) -> dict:
    """Ranking CSV, histogram PNG, Pareto front (CSV, PNG), selection JSONs and a summary table;
    returns the file paths. `pareto_cost`: the cost whose front the `pareto` selection spreads over."""
    out = Path(out_dir)
    for directory in (out, out / "selections"):  # left by a search killed while writing them
        remove_stale_temp_files(directory)
    rows = store.ranking()
    check(len(rows) >= 1, f"results store {store.path} is empty; nothing to rank")
    check(
        pareto_cost in COSTS,
        f"selection.pareto_cost={pareto_cost!r} must be one of {list(COSTS)}",
    )
    if _add_latency(store, space, rows) is None:
        check(
            pareto_cost != "latency_ms",
            "selection.pareto_cost=latency_ms needs predicted latencies: pass "
            "search.latency_table=<file> (python -m nas.latency build, docs/latency.md)",
        )
    ranking = store.export_csv(out / "ranking.csv")
    histogram = plot_histogram(
        [r["oneshot_acc"] for r in rows],
        out / "histogram.png",
        title=f"One-shot accuracy of {len(rows):,} architectures",
    )
    rng = random.Random(seed)
    # small searches (and ties) may leave fewer than k above the percentile: take those there are
    accs = [r["oneshot_acc"] for r in rows]
    above = sum(a > float(np.percentile(accs, percentile)) for a in accs)
    k_top, k_small = min(k, len(rows), top), min(k, above)
    budget = store.get_meta("budget") or {}
    limits = {key.removeprefix("max_"): v for key, v in (budget.get("limits") or {}).items()}
    fronts, pareto_csv, pareto_png = write_pareto(rows, out, limits)
    groups = {
        "top": to_archs(one_shot_top(rows, k_top, top, rng=rng), space),
        "small": to_archs(one_shot_small(rows, k_small, percentile), space) if k_small else [],
        "random": random_group(space, k, rng),
        "allon": all_on(space),
        "pareto": to_archs(spread(fronts.get(pareto_cost, []), k), space),
    }
    lists = {
        name: str(write_selection(out / "selections", name, archs))
        for name, archs in groups.items()
        if archs
    }
    if not groups["small"]:
        console.print(
            f"selection small: no architecture exceeds the {percentile}th percentile (ties); skipped"
        )
    _print_summary(rows, lists)
    console.print(
        f"Pareto front ({pareto_csv.name}): "
        + ", ".join(f"{len(f)} architecture(s) against {c}" for c, f in fronts.items())
        + (f"; budget: {budget['over_budget']:,} proposal(s) over it not scored" if budget else "")
    )
    paths = {
        "ranking": str(ranking),
        "histogram": str(histogram),
        "pareto": str(pareto_csv),
        **({"pareto_figure": str(pareto_png)} if pareto_png else {}),
        "selections": lists,
    }
    write_text(out / "outputs.json", json.dumps(paths, indent=2) + "\n")
    return paths


def _add_latency(store: ResultsStore, space, rows: list[dict]) -> LatencyTable | None:
    """Each row's `latency_ms` predicted by the search's latency table (None: it had none)."""
    recorded = store.get_meta("latency_table")
    if not recorded:
        return None
    if not Path(recorded["path"]).is_file():
        console.print(f"latency table {recorded['path']} is gone: no latency column this time")
        return None
    table = LatencyTable.load(recorded["path"])
    if table.content_hash != recorded.get("hash"):
        console.print(
            f"latency table {recorded['path']} changed since the search; its new times are used"
        )
    for row in rows:
        row["latency_ms"] = table.predict(Architecture.from_json(row["arch_json"], space))
    return table


def _print_summary(rows: list[dict], lists: dict) -> None:
    table = Table(title=f"Top architectures of {len(rows):,} scored")
    latency = "latency_ms" in rows[0]
    for column in (
        "rank",
        "arch id",
        "one-shot acc",
        "params",
        "MACs",
        *(["latency ms"] if latency else []),
    ):
        table.add_column(column, justify="right")
    for rank, row in enumerate(rows[:10], 1):
        table.add_row(
            str(rank),
            row["arch_id"],
            f"{row['oneshot_acc']:.4f}",
            f"{row['params']:,}",
            f"{row['macs']:,}",
            *([f"{row['latency_ms']:.3f}"] if latency else []),
        )
    console.print(table)
    accs = sorted(r["oneshot_acc"] for r in rows)
    console.print(
        f"one-shot accuracy: min {accs[0]:.4f}  median {accs[len(accs) // 2]:.4f}  max {accs[-1]:.4f}"
    )
    for name, path in lists.items():
        console.print(f"selection {name:<7} -> {path}")
