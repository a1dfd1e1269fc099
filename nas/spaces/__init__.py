"""Search spaces, by name. `build_space(spec)` rebuilds a space from the plain dict in a checkpoint."""

from __future__ import annotations

from collections.abc import Mapping

from nas.errors import check
from nas.spaces.base import Architecture, Decision, Masks, SearchSpace
from nas.spaces.oneshot_cell import OneShotCellSpace

SPACES: dict[str, type[SearchSpace]] = {OneShotCellSpace.name: OneShotCellSpace}


def build_space(spec: SearchSpace | Mapping) -> SearchSpace:
    """A space from a `SearchSpace.spec()` dict (or the space itself)."""
    if isinstance(spec, SearchSpace):
        return spec
    spec = dict(spec)
    name = spec.pop("name", None)
    check(name in SPACES, f"unknown search space {name!r}; known spaces: {sorted(SPACES)}")
    return SPACES[name](**spec)


__all__ = [
    "SPACES",
    "Architecture",
    "Decision",
    "Masks",
    "OneShotCellSpace",
    "SearchSpace",
    "build_space",
]
