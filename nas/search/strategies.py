"""Search strategies behind one ask/tell interface: random search (the paper's) and regularized evolution.

Every strategy is replayable: with the same seed and the same sequence of `tell` scores it asks the same
architectures. A killed search resumes by replaying its stored results through ask/tell (see
`nas.search.driver`), so strategies keep no state outside their `random.Random` and what they were told.
Contract: every `ask()` is eventually followed by a `tell()` of that architecture, in ask order.
"""

from __future__ import annotations

import importlib
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


# name -> class, or "module:class" for strategies whose module needs torch (imported when used)
STRATEGIES: dict[str, type[Strategy] | str] = {
    "random": RandomSearch,
    "evolution": RegularizedEvolution,
    "controller": "nas.search.controller_strategy:ControllerStrategy",
}
_SUPPLIED = ("space", "rng", "module")  # arguments the search passes itself, not settings


def _strategy_class(name: str) -> type[Strategy]:
    check(
        name in STRATEGIES,
        f"unknown search strategy {name!r}; choose one of {sorted(STRATEGIES)} (strategy=<name>)",
    )
    found = STRATEGIES[name]
    if isinstance(found, str):
        module, _, attr = found.partition(":")
        found = STRATEGIES[name] = getattr(importlib.import_module(module), attr)
    return found


def strategy_settings(name: str, kwargs: Mapping | None = None) -> dict:
    """Every setting of strategy `name`: its constructor defaults, updated with `kwargs`.

    Comparing these (not the given keys) makes `{}` and the spelled-out defaults the same search.
    """
    cls = _strategy_class(name)
    params = inspect.signature(cls).parameters
    defaults = {k: p.default for k, p in params.items() if k not in _SUPPLIED and k != "self"}
    return {**defaults, **dict(kwargs or {})}


def build_strategy(
    name: str, space: SearchSpace, rng: random.Random, module=None, **kwargs
) -> Strategy:
    """The strategy registered as `name`, built for `space` with its keyword arguments; a strategy
    that takes `module` (the trained supernet's LightningModule) is given it."""
    cls = _strategy_class(name)
    check_settings(kwargs, "strategy", cls, supplied=_SUPPLIED)
    if "module" in inspect.signature(cls).parameters:
        kwargs["module"] = module
    return cls(space, rng, **kwargs)
