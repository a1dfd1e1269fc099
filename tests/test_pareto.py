"""The Pareto front against brute force (ties included), its spread selection, and its files."""

from __future__ import annotations

import csv
import random

import pytest

from nas.errors import NasError
from nas.results.pareto import pareto_front, spread, write_pareto


def dominates(b, a, cost) -> bool:
    better_or_equal = b["oneshot_acc"] >= a["oneshot_acc"] and b[cost] <= a[cost]
    return better_or_equal and (b["oneshot_acc"] > a["oneshot_acc"] or b[cost] < a[cost])


def brute_force(rows, cost) -> set[str]:
    return {a["arch_id"] for a in rows if not any(dominates(b, a, cost) for b in rows)}


def row(arch_id, acc, params, macs=0):
    return {
        "arch_id": arch_id,
        "oneshot_acc": acc,
        "params": params,
        "macs": macs,
        "arch_json": "{}",
    }


# A hand-made table: a staircase with ties in cost, in accuracy, and a duplicated point.
TABLE = [
    row("a", 0.50, 100),  # cheapest
    row("b", 0.40, 100),  # same cost as a, less accurate: dominated
    row("c", 0.60, 150),
    row("d", 0.60, 150),  # same point as c: both stay
    row("e", 0.60, 160),  # as accurate as c, costlier: dominated
    row("f", 0.55, 200),  # dominated by c
    row("g", 0.70, 300),
    row("h", 0.70, 300.0),  # same point as g (float cost)
    row("i", 0.65, 400),
    row("j", 0.80, 500),  # most accurate
]


def test_the_front_of_a_hand_made_table():
    front = pareto_front(TABLE, "params")
    assert [r["arch_id"] for r in front] == ["a", "c", "d", "g", "h", "j"]
    assert {r["arch_id"] for r in front} == brute_force(TABLE, "params")


@pytest.mark.parametrize("seed", range(20))
def test_the_front_equals_brute_force_on_random_tables_with_ties(seed):
    rng = random.Random(seed)
    rows = [
        row(str(i), rng.randint(0, 8) / 8, rng.randint(1, 12), rng.randint(1, 4)) for i in range(60)
    ]
    for cost in ("params", "macs"):
        front = pareto_front(rows, cost)
        assert {r["arch_id"] for r in front} == brute_force(rows, cost)
        assert [r[cost] for r in front] == sorted(r[cost] for r in front)  # cheapest first


def test_spread_takes_both_ends_and_even_steps_between():
    front = [row(str(i), i / 10, i) for i in range(7)]
    assert [r["arch_id"] for r in spread(front, 3)] == ["0", "3", "6"]
    assert [r["arch_id"] for r in spread(front, 4)] == ["0", "2", "4", "6"]
    assert [r["arch_id"] for r in spread(front, 1)] == ["6"]
    assert spread(front, 10) == front
    with pytest.raises(NasError, match="selection k=0 must be an integer >= 1"):
        spread(front, 0)


def test_an_unknown_cost_is_named():
    with pytest.raises(NasError, match=r"Pareto cost 'flops' is not one of \['params', 'macs'"):
        pareto_front(TABLE, "flops")


@pytest.mark.slow  # draws a figure
def test_pareto_csv_lists_the_union_of_the_fronts(tmp_path):
    rows = [{**r, "macs": 1000 - r["params"]} for r in TABLE]  # macs ranks them the other way
    fronts, path, figure = write_pareto(rows, tmp_path, {"params": 350})
    with open(path, newline="") as f:
        listed = list(csv.DictReader(f))
    for cost in ("params", "macs"):
        flagged = {r["arch_id"] for r in listed if r[f"on_{cost}_front"] == "1"}
        assert flagged == brute_force(rows, cost) == {r["arch_id"] for r in fronts[cost]}
    assert {r["arch_id"] for r in listed} == brute_force(rows, "params") | brute_force(rows, "macs")
    accs = [float(r["oneshot_acc"]) for r in listed]
    assert accs == sorted(accs, reverse=True) and "latency_ms" not in listed[0]
    assert figure.stat().st_size > 1000


def test_a_pareto_cost_the_search_lacks_is_refused_before_any_output(small_space, tmp_path):
    from nas.results.outputs import write_outputs
    from nas.results.store import ResultsStore

    with ResultsStore(tmp_path / "results.sqlite", space=small_space) as store:
        store.add({"arch": small_space.all_on(), "oneshot_acc": 0.5, "params": 10, "macs": 20})
        with pytest.raises(NasError, match="pareto_cost=latency_ms needs predicted latencies"):
            write_outputs(store, small_space, tmp_path, pareto_cost="latency_ms")
        with pytest.raises(NasError, match=r"pareto_cost='flops' must be one of \['params'"):
            write_outputs(store, small_space, tmp_path, pareto_cost="flops")
    assert not (tmp_path / "ranking.csv").exists()
