"""The places a space chooses something (`Decision`) and the nodes its pointer decisions name (`Node`).

A decision chooses `min_k..max_k` of its options; an architecture is one valid subset per decision
(`nas.spaces.base`). Both are plain frozen values with no knowledge of networks.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from nas.errors import check


@dataclass(frozen=True)
class Decision:
    """One place where the space chooses `min_k..max_k` of `options` (order of options is fixed)."""

    name: str
    options: tuple[str, ...]
    min_k: int = 1
    max_k: int | None = None  # None: up to every option
    pointer: bool = False  # options name earlier nodes of the space (`SearchSpace.nodes`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        if self.max_k is None:
            object.__setattr__(self, "max_k", len(self.options))
        check(
            len(set(self.options)) == len(self.options),
            f"decision {self.name!r} repeats an option: {self.options}",
        )
        check(
            0 <= self.min_k <= self.max_k <= len(self.options) and self.max_k >= 1,
            f"decision {self.name!r}: need 0 <= min_k <= max_k <= {len(self.options)} options, "
            f"got min_k={self.min_k}, max_k={self.max_k}",
        )

    @property
    def fan_in(self) -> int:
        """Number of paths into this node (the k of path dropout's r^(1/k))."""
        return len(self.options)

    def count(self) -> int:
        """Number of valid subsets."""
        n = len(self.options)
        return sum(math.comb(n, k) for k in range(self.min_k, self.max_k + 1))

    def subsets(self) -> Iterator[tuple[str, ...]]:
        """Every valid subset, each in option order."""
        for k in range(self.min_k, self.max_k + 1):
            yield from itertools.combinations(self.options, k)

    def sample(self, rng: random.Random) -> tuple[str, ...]:
        """A subset drawn uniformly from all valid subsets (size k is drawn with weight C(n, k))."""
        n = len(self.options)
        sizes = list(range(self.min_k, self.max_k + 1))
        k = rng.choices(sizes, weights=[math.comb(n, s) for s in sizes])[0]
        return self.canonical(rng.sample(self.options, k))

    def canonical(self, chosen: Iterable[str]) -> tuple[str, ...]:
        """Validate `chosen` and return it in option order."""
        chosen = tuple(chosen)
        unknown = [c for c in chosen if c not in self.options]
        check(
            not unknown,
            f"decision {self.name!r}: unknown option(s) {unknown}; allowed: {list(self.options)}",
        )
        check(
            len(set(chosen)) == len(chosen),
            f"decision {self.name!r}: option chosen twice in {list(chosen)}",
        )
        check(
            self.min_k <= len(chosen) <= self.max_k,
            f"decision {self.name!r}: chose {len(chosen)} option(s) {list(chosen)}, "
            f"expected {self.min_k} to {self.max_k} of {list(self.options)}",
        )
        return tuple(o for o in self.options if o in chosen)


NODE_TIMES = ("before", "at", "after")


@dataclass(frozen=True)
class Node:
    """A node of the space's graph that pointer decisions choose among (the ENAS controller's anchors).

    The node exists relative to decision `at`: `before` it is decided (an input of a cell), `at` it
    (made by that decision, e.g. a layer by choosing its skips) or `after` it (complete once it is
    decided, e.g. a cell node after its last op).
    """

    name: str
    at: str
    when: str = "after"

    def __post_init__(self) -> None:
        check(
            self.when in NODE_TIMES,
            f"node {self.name!r}: when={self.when!r} must be one of {list(NODE_TIMES)}",
        )
