"""Search under a budget: nothing over it is scored, what was refused is counted, evolution mutates
within it, a strategy proposing on its own has its refused proposals discarded, and search.py runs
with a params and latency budget end to end (resuming replays the same refusals)."""

from __future__ import annotations

import csv
import json
import random
import sqlite3
import statistics
from pathlib import Path

import pytest

from nas.errors import NasError
from nas.results.complexity import SizeTable
from nas.results.store import ResultsStore
from nas.search.budget import Budget, BudgetedStrategy, budgeted, check_limits
from nas.search.driver import replay_or_evaluate
from nas.search.strategies import RandomSearch, RegularizedEvolution, Strategy
from nas.spaces import SPACES
from nas.spaces.base import Architecture
from tests.conftest import compose_config
from tests.test_latency import IMAGE_IDS, IMAGE_SPACES

NETWORK = {"filters": 4, "cells": 2, "stages": 2, "num_classes": 10, "in_channels": 3}
SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def sizes():
    """Sizes of the `small_space` fixture's children (one supernet pass for the whole module)."""
    from nas.spaces.oneshot_cell import OneShotCellSpace

    space = OneShotCellSpace(num_blocks=2, ops=["identity", "sep3x3", "maxpool3x3"], max_ops=2)
    return SizeTable(space, NETWORK, SHAPE)


def score(arch: Architecture) -> float:
    return int(arch.id, 16) % 1000 / 1000


def evaluate(archs):
    return [{"oneshot_acc": score(a)} for a in archs]


def median_cost(space, sizes, index: int, n: int = 200) -> float:
    rng = random.Random(123)
    return statistics.median(sizes(space.sample(rng))[index] for _ in range(n))


def test_random_search_scores_only_what_fits_and_counts_the_rest(small_space, sizes, tmp_path):
    limit = median_cost(small_space, sizes, 0)
    budget = Budget(check_limits(limit, None, None), sizes)
    strategy = budgeted(lambda s: RandomSearch(s, random.Random(3)), small_space, budget)
    with ResultsStore(tmp_path / "results.sqlite", space=small_space) as store:
        replay_or_evaluate(strategy, store, 15, evaluate)
        stored = [r["arch_id"] for r in store.results()]
    # reference: the unbudgeted stream of the same seed, over-budget draws dropped and counted
    raw, expected, refused = RandomSearch(small_space, random.Random(3)), [], 0
    while len(expected) < 15:
        arch = raw.ask()
        if sizes(arch)[0] > limit:
            refused += 1
        elif arch.id not in expected:
            expected.append(arch.id)
    assert stored == expected
    assert budget.rejected == refused > 0
    assert budget.report() == {
        "limits": {"max_params": limit},
        "over_budget": refused,
        "over_budget_by_limit": {"max_params": refused},
    }


def test_evolution_mutates_within_the_budget(small_space, sizes):
    limit = median_cost(small_space, sizes, 1)
    budget = Budget(check_limits(None, limit, None), sizes)
    evolution = budgeted(
        lambda s: RegularizedEvolution(s, random.Random(0), population_size=8, sample_size=3),
        small_space,
        budget,
    )
    for i in range(80):
        members = [m for m, _ in evolution.population]
        arch = evolution.ask()
        assert sizes(arch)[1] <= limit
        if i >= 8:  # after the random fill: a mutation (one decision changed) of a member
            assert any(_changed_decisions(arch, m) == 1 for m in members)
        evolution.tell(arch, score(arch))
    assert budget.rejected > 0 and budget.over_budget == {"macs": budget.rejected}


def _changed_decisions(a: Architecture, b: Architecture) -> int:
    return sum(a[d.name] != b[d.name] for d in a.space.decisions)


class Listing(Strategy):
    """Proposes a fixed list in order, as a strategy with a model of its own would (not through
    the space's sample/mutate); records what it is told and what is discarded."""

    def __init__(self, space, rng, archs):
        super().__init__(space, rng)
        self.archs, self.told, self.discarded = list(archs), [], []

    def ask(self):
        return self.archs.pop(0)

    def tell(self, arch, score):
        self.told.append(arch.id)

    def discard(self, arch):
        self.discarded.append(arch.id)


def test_a_strategy_proposing_on_its_own_has_refused_proposals_discarded(small_space, sizes):
    rng = random.Random(5)
    archs = [small_space.sample(rng) for _ in range(30)]
    limit = statistics.median(sizes(a)[0] for a in archs)
    budget = Budget(check_limits(limit, None, None), sizes)
    inner = Listing(small_space, random.Random(0), archs)
    strategy = BudgetedStrategy(inner, budget)
    fits = [a.id for a in archs if sizes(a)[0] <= limit]
    asked = []
    for _ in fits:
        arch = strategy.ask()
        asked.append(arch.id)
        strategy.tell(arch, 0.5)
    assert asked == inner.told == fits
    assert inner.discarded == [a.id for a in archs if sizes(a)[0] > limit]
    assert budget.rejected == len(inner.discarded) > 0


def test_a_budget_that_admits_nothing_stops_with_the_smallest_seen(small_space, sizes):
    budget = Budget(check_limits(1, None, None), sizes)
    strategy = budgeted(lambda s: RandomSearch(s, random.Random(0)), small_space, budget, tries=50)
    with pytest.raises(NasError, match=r"max_params=1 admitted none of 50 random samples.*params"):
        strategy.ask()
    big = Listing(small_space, random.Random(0), [small_space.all_on()] * 9)
    listing = BudgetedStrategy(big, budget, tries=9)
    with pytest.raises(NasError, match="none of 9 proposals of strategy Listing"):
        listing.ask()


@pytest.mark.parametrize(
    "limits, message",
    [
        ((-5, None, None), r"search.max_params=-5 must be a positive number of parameters or null"),
        ((None, True, None), r"search.max_macs=True must be a positive number"),
        ((None, None, float("inf")), r"search.max_latency_ms=inf must be a positive number"),
    ],
)
def test_bad_limits_are_named(limits, message):
    with pytest.raises(NasError, match=message):
        check_limits(*limits)


def test_a_latency_limit_needs_a_table(sizes):
    with pytest.raises(NasError, match=r"max_latency_ms=2.5 needs a latency table.*latency_table"):
        Budget(check_limits(None, None, 2.5), sizes)


def test_no_limit_leaves_the_strategy_as_it_is(small_space, sizes):
    plain = budgeted(lambda s: RandomSearch(s, random.Random(0)), small_space, Budget({}, sizes))
    assert type(plain) is RandomSearch and plain.space is small_space


@pytest.mark.slow
@pytest.mark.parametrize("name, spec", IMAGE_SPACES, ids=IMAGE_IDS)
def test_random_search_and_evolution_keep_to_the_budget_in_every_image_space(name, spec):
    space = SPACES[name](**spec)
    sizes = SizeTable(space, NETWORK, SHAPE)
    max_params, max_macs = median_cost(space, sizes, 0), median_cost(space, sizes, 1)
    for make in (
        lambda s: RandomSearch(s, random.Random(0)),
        lambda s: RegularizedEvolution(s, random.Random(0), population_size=5, sample_size=2),
    ):
        budget = Budget(check_limits(max_params, max_macs, None), sizes)
        strategy = budgeted(make, space, budget)
        for _ in range(30):
            arch = strategy.ask()
            params, macs = sizes(arch)
            assert params <= max_params and macs <= max_macs
            strategy.tell(arch, score(arch))
        assert budget.rejected > 0


@pytest.mark.slow
def test_search_py_under_a_params_and_latency_budget(smoke_supernet, tmp_path):
    import search
    from nas.latency.cli import main as latency
    from nas.latency.table import LatencyTable
    from nas.spaces.oneshot_cell import OneShotCellSpace

    table_path = tmp_path / "latency.json"
    build = ["build", "--space", "oneshot_cell", "--out", str(table_path), "--warmup", "0"]
    assert latency([*build, "--repeats", "1", "experiment=smoke"]) == 0
    table = LatencyTable.load(table_path)
    space = OneShotCellSpace(num_blocks=2)
    sizes = SizeTable(space, table.network, table.input_shape)
    max_params = median_cost(space, sizes, 0)
    rng = random.Random(1)
    max_ms = statistics.median(table.predict(space.sample(rng)) for _ in range(100))
    out = tmp_path / "search"
    overrides = [
        "experiment=smoke",
        f"ckpt={smoke_supernet / 'checkpoints' / 'last.ckpt'}",
        f"out_dir={out}",
        "search.num_archs=8",
        "selection.k=3",
        f"search.max_params={max_params}",
        f"search.max_latency_ms={max_ms}",
        f"search.latency_table={table_path}",
        "strategy=evolution",
        "strategy.population_size=4",
        "strategy.sample_size=2",
    ]
    paths = search.run(compose_config("search", overrides, out))
    with ResultsStore(out / "results.sqlite") as store:
        rows, budget = store.results(), store.get_meta("budget")
    assert len(rows) == 8 and all(r["params"] <= max_params for r in rows)
    archs = [Architecture.from_json(r["arch_json"], space) for r in rows]
    assert all(table.predict(a) <= max_ms for a in archs)
    assert budget["over_budget"] > 0
    assert set(budget["over_budget_by_limit"]) <= {"max_params", "max_latency_ms"}
    # pareto.csv: the non-dominated of the stored rows by params (brute force here)
    front = [
        r["arch_id"]
        for r in rows
        if not any(
            b["oneshot_acc"] >= r["oneshot_acc"]
            and b["params"] <= r["params"]
            and (b["oneshot_acc"], b["params"]) != (r["oneshot_acc"], r["params"])
            for b in rows
        )
    ]
    with open(paths["pareto"], newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames[:5] == ["arch_id", "oneshot_acc", "params", "macs", "latency_ms"]
        listed = [line for line in reader if line["on_params_front"] == "1"]
    assert sorted(line["arch_id"] for line in listed) == sorted(front)
    picks = Path(paths["selections"]["pareto"]).read_text().split()
    assert picks and all(Architecture.load(p).id in front for p in picks)
    # the same command again: nothing new scored, the same refusals replayed and counted
    search.run(compose_config("search", overrides, out))
    with sqlite3.connect(out / "results.sqlite") as db:
        again = json.loads(db.execute("SELECT value FROM meta WHERE key = 'budget'").fetchone()[0])
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 8
    assert again == budget
