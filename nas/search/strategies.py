"""Search strategies behind one ask/tell interface: random search (the paper's) and regularized evolution.

Every strategy is replayable: with the same seed and the same sequence of `tell` scores it asks the same
architectures. A killed search resumes by replaying its stored results through ask/tell (see
`nas.search.driver`), so strategies keep no state outside their `random.Random` and what they were told.
Contract: every `ask()` is eventually followed by a `tell()` of that architecture, in ask order, or
by a `discard()` when a budget refuses it unscored (`nas.search.budget`).
"""

from __future__ import annotations

import inspect
import math
import random
from collections import deque
from collections.abc import Mapping

from nas.config import check_settings
from nas.errors import check
from nas.spaces.base import Architecture, SearchSpace


class Strategy:
    """Proposes architectures (`ask`) and learns from their scores (`tell`)."""

    name: str | None = None  # results folder `<name>-seed<seed>/`, and the store's label

    # Whether proposals depend on the scores told. Only a strategy that ignores them has a stream of
    # proposals fixed by its seed alone, which shards can split (`nas.search.driver.score_shard`).
    uses_scores = True

    def __init__(self, space: SearchSpace, rng: random.Random):
        check(
            isinstance(rng, random.Random),
            f"strategy rng must be a random.Random, got {type(rng).__name__}; "
            "pass random.Random(seed)",
        )
        self.space, self.rng = space, rng

    def ask(self) -> Architecture:
        """The next architecture to score."""
        raise NotImplementedError

    def tell(self, arch: Architecture, score: float) -> None:
        """Report the score of an architecture returned by `ask` (higher is better)."""
        _check_score(arch, score)

    def discard(self, arch: Architecture) -> None:
        """`arch`, returned by `ask`, is over the search's budget and will never be scored or told.
        By default nothing happens: the strategy learns from the scored architectures only."""


def _check_score(arch: Architecture, score: float) -> float:
    try:
        value = float(score)  # also numpy scalars and 0-d tensors
    except (TypeError, ValueError):
        value = math.nan
    check(
        math.isfinite(value),
        f"score of architecture {arch.id} is {score!r}; expected a finite number (e.g. one-shot accuracy)",
    )
    return value


class RandomSearch(Strategy):
    """Independent samples from the space's fixed distribution (Bender et al. 2018); ignores scores."""

    name = "random"
    uses_scores = False

    def ask(self) -> Architecture:
        return self.space.sample(self.rng)


class RegularizedEvolution(Strategy):
    """Aging evolution (Real et al. 2019): tournament of `sample_size`, mutate the best, drop the oldest.

    The first `population_size` asks are random samples. Later asks draw `sample_size` members of the
    current population with replacement (Algorithm 1 of the paper), mutate the best-scoring one, and
    every `tell` appends to the population and drops its oldest member. Asking several architectures
    before telling them is allowed (asynchronous evolution): parents then come from the population as
    told so far, which is still replayable because the ask/tell order is fixed by the driver.
    """

    name = "evolution"

    def __init__(
        self,
        space: SearchSpace,
        rng: random.Random,
        population_size: int = 50,
        sample_size: int = 10,
    ):
        super().__init__(space, rng)
        check(
            isinstance(population_size, int) and population_size >= 1,
            f"strategy.population_size={population_size!r} must be an integer >= 1 (Real et al. use 50-100)",
        )
        check(
            isinstance(sample_size, int) and 1 <= sample_size,
            f"strategy.sample_size={sample_size!r} must be an integer >= 1 (Real et al. use 10-25)",
        )
        check(
            space.count() > 1,
            f"space {space.name!r} has a single architecture; evolution needs more",
        )
        self.population_size, self.sample_size = population_size, sample_size
        self.population: deque[tuple[Architecture, float]] = deque(maxlen=population_size)
        self.asked = 0

    def ask(self) -> Architecture:
        self.asked += 1
        # Fill phase decided by asks, not tells, so it does not depend on how asks and tells interleave.
        if self.asked <= self.population_size or not self.population:
            return self.space.sample(self.rng)
        members = list(self.population)
        contenders = [members[self.rng.randrange(len(members))] for _ in range(self.sample_size)]
        parent = max(contenders, key=lambda member: member[1])[0]  # first of equal scores wins
        return self.space.mutate(parent, self.rng)

    def tell(self, arch: Architecture, score: float) -> None:
        self.population.append((arch, _check_score(arch, score)))  # deque maxlen drops the oldest


_SUPPLIED = ("space", "rng", "module")  # arguments the search passes itself, not settings


def strategy_class(spec: Mapping) -> type[Strategy]:
    """The strategy class of a `strategy` config (`_target_`, as `conf/strategy/*.yaml` give it)."""
    from hydra.utils import get_object

    target = spec.get("_target_") if isinstance(spec, Mapping) else None
    try:
        found = get_object(str(target)) if target else None
    except Exception:  # Hydra reports any failure to import or find it the same way
        found = None
    check(
        isinstance(found, type) and issubclass(found, Strategy),
        f"unknown search strategy {target!r}: strategy._target_ must name a Strategy class; "
        "choose one of conf/strategy/*.yaml (strategy=<name>) or give your own "
        "(strategy._target_=<module.Class>, a subclass of nas.search.strategies.Strategy)",
    )
    return found


def strategy_name(spec: Mapping | str) -> str:
    """The name a strategy's results are stored under (`<run>/search/<name>-seed<seed>/`): its
    class's `name`, else the class name; `spec` is its config or its `_target_`."""
    cls = strategy_class({"_target_": spec} if isinstance(spec, str) else spec)
    return cls.name or cls.__name__


def _given(spec: Mapping) -> dict:
    return {k: v for k, v in dict(spec).items() if not str(k).startswith("_")}


def strategy_settings(spec: Mapping) -> dict:
    """Every setting of the strategy of `spec`: its constructor defaults, updated with the given.

    Comparing these (not the given keys) makes `{}` and the spelled-out defaults the same search.
    """
    params = inspect.signature(strategy_class(spec)).parameters
    defaults = {k: p.default for k, p in params.items() if k not in _SUPPLIED and k != "self"}
    return {**defaults, **_given(spec)}


def build_strategy(spec: Mapping, space: SearchSpace, rng: random.Random, module=None) -> Strategy:
    """The strategy of the config `spec` (`_target_` and settings), built for `space`; a strategy
    that takes `module` (the trained supernet's LightningModule) is given it."""
    cls = strategy_class(spec)
    kwargs = _given(spec)
    check_settings(kwargs, "strategy", cls, supplied=_SUPPLIED)
    if "module" in inspect.signature(cls).parameters:
        kwargs["module"] = module
    return cls(space, rng, **kwargs)
