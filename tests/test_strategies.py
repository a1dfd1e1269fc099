"""Strategies and the search loop: the paper's sampling distribution, evolution improves, resume = replay."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from omegaconf import OmegaConf
from scipy.stats import chisquare

from nas.errors import NasError
from nas.results.store import ResultsStore
from nas.search.driver import replay_or_evaluate
from nas.search.strategies import RandomSearch, RegularizedEvolution, build_strategy
from nas.spaces.oneshot_cell import OneShotCellSpace
from tests.conftest import ROOT


def sep_count(arch) -> int:
    """A fixed score: how many blocks chose the separable 3x3 convolution."""
    return sum("sep3x3" in arch[d.name] for d in arch.space.decisions if d.name.endswith("/ops"))


class FakeEvaluator:
    """Deterministic scores from the architecture; raises at call `kill_at` to simulate a killed run."""

    def __init__(self, kill_at: int | None = None, seen: Counter | None = None):
        self.calls, self.kill_at = 0, kill_at
        self.seen = Counter() if seen is None else seen  # arch id -> times evaluated

    def __call__(self, archs):
        self.calls += 1
        if self.kill_at is not None and self.calls == self.kill_at:
            raise KeyboardInterrupt("killed")
        self.seen.update(a.id for a in archs)
        return [
            {
                "oneshot_acc": sep_count(a) + int(a.id, 16) % 997 / 1000,
                "params": len(a.id),
                "macs": 1,
            }
            for a in archs
        ]


def test_random_search_matches_the_space_distribution(small_space):
    strategy = RandomSearch(small_space, random.Random(0))
    n = 6000
    archs = [strategy.ask() for _ in range(n)]
    for name in ("block1/inputs", "block1/ops"):
        d = small_space.decision(name)
        counts = Counter(a[name] for a in archs)
        p = 1 / d.count()
        assert set(counts) == set(d.subsets())
        sd = math.sqrt(n * p * (1 - p))
        assert all(abs(c - n * p) < 5 * sd for c in counts.values()), counts
    # jointly: uniform over every valid choice of every decision (a chi-square test at 0.1%)
    tiny = OneShotCellSpace(num_blocks=1, ops=["identity", "sep3x3", "maxpool3x3"])
    joint_strategy = RandomSearch(tiny, random.Random(1))
    joint = Counter(joint_strategy.ask() for _ in range(n))
    assert len(joint) == tiny.count() == 18
    assert chisquare(list(joint.values())).pvalue > 1e-3


def test_evolution_beats_random_on_a_fixed_score():
    space = OneShotCellSpace()  # the paper's space: sep3x3 is in 7 of 28 op subsets
    evo = RegularizedEvolution(space, random.Random(0), population_size=20, sample_size=5)
    for _ in range(400):
        arch = evo.ask()
        evo.tell(arch, sep_count(arch))
    rng = random.Random(0)
    random_mean = sum(sep_count(space.sample(rng)) for _ in range(400)) / 400
    evo_mean = sum(score for _, score in evo.population) / len(evo.population)
    assert random_mean == pytest.approx(1.0, abs=0.2)  # 4 blocks x 7/28
    assert evo_mean > random_mean + 2.0 and len(evo.population) == 20


def test_evolution_fills_population_at_random_then_mutates(small_space):
    evo = RegularizedEvolution(small_space, random.Random(3), population_size=5, sample_size=2)
    for _ in range(5):
        evo.tell(evo.ask(), 0.0)
    best = small_space.sample(random.Random(9))
    for _ in range(5):
        evo.tell(best, 1.0)  # the oldest five are dropped, only `best` remains
    assert {a for a, _ in evo.population} == {best}
    child = evo.ask()
    differ = [d.name for d in small_space.decisions if child[d.name] != best[d.name]]
    assert len(differ) == 1


def _run(path, name, seed, num_archs, evaluator, batch_archs, space):
    spec = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "strategy" / f"{name}.yaml"))
    spec = spec.get("strategy", spec)  # a global-package config (proxy: it also sets proxy, ckpt)
    spec.pop("defaults", None)
    if name == "evolution":
        spec.update(population_size=8, sample_size=3)
    strategy = build_strategy(spec, space, random.Random(seed))
    with ResultsStore(path, space=space) as store:
        return replay_or_evaluate(
            strategy,
            store,
            num_archs,
            evaluator,
            batch_archs=batch_archs,
            row_fields={"checkpoint": "x.ckpt", "eval_ghost_size": 32},
        )


def _rows(path):
    with ResultsStore(path) as store:
        return [(r["arch_id"], r["oneshot_acc"], r["seq"]) for r in store.results()]


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in (ROOT / "conf" / "strategy").glob("*.yaml"))
)
@pytest.mark.parametrize("batch_archs", [1, 4])
def test_killed_search_resumes_to_the_uninterrupted_result(
    tmp_path, small_space, name, batch_archs
):
    n = 40
    full = _run(tmp_path / "full.sqlite", name, 7, n, FakeEvaluator(), batch_archs, small_space)
    assert full.evaluated == n and full.replayed == 0
    seen = Counter()
    killed = tmp_path / "killed.sqlite"
    with pytest.raises(KeyboardInterrupt):
        _run(killed, name, 7, n, FakeEvaluator(kill_at=4, seen=seen), batch_archs, small_space)
    stored = len(_rows(killed))
    assert stored == 3 * batch_archs  # three evaluate calls completed before the kill
    resumed = _run(killed, name, 7, n, FakeEvaluator(seen=seen), batch_archs, small_space)
    assert resumed.replayed == stored and resumed.evaluated == n - stored
    assert _rows(killed) == _rows(tmp_path / "full.sqlite")
    assert [a.id for a, _ in resumed.history] == [a.id for a, _ in full.history]
    assert max(seen.values()) == 1 and len(seen) == n  # nothing evaluated twice


def test_repeats_are_redrawn_and_not_evaluated_again():
    tiny = OneShotCellSpace(num_blocks=1, ops=["identity", "sep3x3"])  # 3 x 3 = 9 architectures
    evaluator, progress = FakeEvaluator(), []
    with ResultsStore(":memory:") as store:
        summary = replay_or_evaluate(
            RandomSearch(tiny, random.Random(0)),
            store,
            9,
            evaluator,
            batch_archs=2,
            on_result=lambda i, n: progress.append((i, n)),
        )
        assert store.ids() == {a.id for a in tiny.enumerate()}
    assert max(evaluator.seen.values()) == 1 and summary.repeats > 0
    assert progress == [(i, 9) for i in range(1, 10)]


def test_more_archs_than_the_space_holds_is_refused(tmp_path):
    tiny = OneShotCellSpace(num_blocks=1, ops=["identity", "sep3x3"])
    with (
        ResultsStore(tmp_path / "r.sqlite") as store,
        pytest.raises(NasError, match="exceeds the 9"),
    ):
        replay_or_evaluate(RandomSearch(tiny, random.Random(0)), store, 10, FakeEvaluator())


def test_bad_strategy_inputs_are_refused(small_space):
    with pytest.raises(NasError, match="unknown search strategy"):
        build_strategy(
            {"_target_": "nas.search.strategies.Annealing"}, small_space, random.Random(0)
        )
    with pytest.raises(NasError, match="population_size"):
        RegularizedEvolution(small_space, random.Random(0), population_size=0)
    with pytest.raises(NasError, match="finite"):
        RandomSearch(small_space, random.Random(0)).tell(
            small_space.sample(random.Random(0)), float("nan")
        )
