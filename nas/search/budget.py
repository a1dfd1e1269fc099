"""Search under a budget: limits on parameters, MACs and predicted latency, around any strategy.

Architectures over budget are never scored: they are counted (by the limit they exceed) and left
out. Two layers do it, so no strategy, method or space needs to know of the budget:

- The strategy is built on a copy of the space whose `sample` and `mutate` draw again until the
  architecture fits (`within_budget`): random search samples within the budget, and evolution's
  random fill and its mutations stay within it (a mutation of a parent is redrawn, the parent kept).
- `BudgetedStrategy` wraps the strategy and checks every `ask`. A strategy that proposes on its own
  (a controller sampling its policy) has its proposals over budget discarded (`discard`, never
  told), so the search samples the policy restricted to the budget, and a learning controller
  learns from the scores of architectures within it only.

Both redraw at most `tries` times in a row, then stop with a message naming the budget and the
smallest architecture seen. Drawing is deterministic (the strategy's seed), so a resumed search
replays the same rejections and its counts are those of one uninterrupted run.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable, Mapping

from nas.errors import NasError, check
from nas.search.strategies import Strategy
from nas.spaces.base import Architecture, SearchSpace

TRIES = 10_000  # draws in a row over budget before a search gives up (search.budget_tries)
LIMITS = {"max_params": "params", "max_macs": "macs", "max_latency_ms": "latency_ms"}
_UNITS = {"params": "parameters", "macs": "multiply-accumulates", "latency_ms": "milliseconds"}


class Budget:
    """The limits of a search and the costs of architectures against them (with counts)."""

    def __init__(
        self,
        limits: Mapping[str, float | None],
        sizes: Callable[[Architecture], tuple[int, int]],
        latency: Callable[[Architecture], float] | None = None,
    ):
        self.limits = {LIMITS[k]: v for k, v in limits.items() if v is not None}
        self.sizes, self.latency = sizes, latency
        check(
            "latency_ms" not in self.limits or latency is not None,
            f"search.max_latency_ms={self.limits.get('latency_ms')} needs a latency table: build "
            "one (python -m nas.latency build --device cpu --space <space> ...) and pass "
            "search.latency_table=<file>",
        )
        self.over_budget = Counter()  # limit -> proposals over it
        self.rejected = 0  # proposals over any limit

    def costs(self, arch: Architecture) -> dict[str, float]:
        """The costs of `arch` that the budget limits."""
        params, macs = self.sizes(arch)
        costs = {"params": params, "macs": macs}
        if "latency_ms" in self.limits:
            costs["latency_ms"] = self.latency(arch)
        return {k: v for k, v in costs.items() if k in self.limits}

    def admits(self, arch: Architecture) -> bool:
        """Whether `arch` fits; a refused one is counted."""
        over = [k for k, v in self.costs(arch).items() if v > self.limits[k]]
        if over:
            self.rejected += 1
            self.over_budget.update(over)
        return not over

    def first_within(
        self,
        draw: Callable[[], Architecture],
        tries: int,
        what: str,
        refused: Callable[[Architecture], None] | None = None,
    ) -> Architecture:
        """The first of at most `tries` draws that fits (`refused` is called with each one that
        does not); else stop, naming the smallest costs drawn."""
        smallest: dict[str, float] = {}
        for _ in range(tries):
            arch = draw()
            if self.admits(arch):
                return arch
            if refused is not None:
                refused(arch)
            for k, v in self.costs(arch).items():
                smallest[k] = min(smallest.get(k, math.inf), v)
        seen = ", ".join(f"{k} {_fmt(v)}" for k, v in smallest.items())
        raise NasError(
            f"the budget {self.describe()} admitted none of {tries:,} {what} in a row (the "
            f"smallest costs drawn: {seen}); raise the limit(s), or search.budget_tries to draw longer"
        )

    def describe(self) -> str:
        return " ".join(f"{_setting(k)}={_fmt(v)}" for k, v in self.limits.items())

    def report(self) -> dict:
        """What the store records: the limits, and the proposals refused (total and by limit)."""
        return {
            "limits": {_setting(k): v for k, v in self.limits.items()},
            "over_budget": self.rejected,
            "over_budget_by_limit": {_setting(k): n for k, n in self.over_budget.items()},
        }


def check_limits(max_params, max_macs, max_latency_ms) -> dict[str, float | None]:
    """The search.max_* settings, checked: each null (no limit) or a positive number."""
    given = {"max_params": max_params, "max_macs": max_macs, "max_latency_ms": max_latency_ms}
    for key, value in given.items():
        ok = value is None or (
            isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        )
        check(
            ok and (value is None or math.isfinite(value)),
            f"search.{key}={value!r} must be a positive number of {_UNITS[LIMITS[key]]} or null "
            f"(no limit), e.g. search.{key}={_EXAMPLES[key]}",
        )
    return given


def within_budget(space: SearchSpace, budget: Budget, tries: int = TRIES) -> SearchSpace:
    """A copy of `space` (same class and decisions, so its architectures are `space`'s) whose
    `sample` and `mutate` redraw until the architecture fits `budget`."""
    restricted = copy.copy(space)
    restricted.sample = lambda rng: budget.first_within(
        lambda: space.sample(rng), tries, "random samples"
    )
    restricted.mutate = lambda arch, rng: budget.first_within(
        lambda: space.mutate(arch, rng), tries, f"mutations of architecture {arch.id}"
    )
    return restricted


class BudgetedStrategy(Strategy):
    """`inner`, asked until it proposes an architecture within `budget`."""

    def __init__(self, inner: Strategy, budget: Budget, tries: int = TRIES):
        super().__init__(inner.space, inner.rng)
        self.inner, self.budget, self.tries = inner, budget, tries
        self.name, self.uses_scores = inner.name, inner.uses_scores

    def ask(self) -> Architecture:
        what = f"proposals of strategy {type(self.inner).__name__}"
        return self.budget.first_within(self.inner.ask, self.tries, what, self.inner.discard)

    def tell(self, arch: Architecture, score: float) -> None:
        self.inner.tell(arch, score)

    def __getattr__(self, name: str):  # what callers read of the strategy (e.g. its metrics)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def budgeted(
    build: Callable[[SearchSpace], Strategy],
    space: SearchSpace,
    budget: Budget | None,
    tries: int = TRIES,
) -> Strategy:
    """The strategy `build(space)` makes, searching within `budget` (None: no limit)."""
    check(
        isinstance(tries, int) and tries >= 1,
        f"search.budget_tries={tries!r} must be an integer >= 1 (draws over budget in a row "
        "before giving up)",
    )
    if budget is None or not budget.limits:
        return build(space)
    return BudgetedStrategy(build(within_budget(space, budget, tries)), budget, tries)


def _setting(cost: str) -> str:
    return next(k for k, v in LIMITS.items() if v == cost)


def _fmt(value: float) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"


_EXAMPLES = {"max_params": 100000, "max_macs": 5000000, "max_latency_ms": 2.5}
