"""Search spaces, by name: one package per space under `nas/spaces/<name>/`, found and registered here.

Each package registers its space class and networks (`register_space`) when imported; importing this
package imports them all, so `build_space(spec)` rebuilds any space from the plain dict in a checkpoint.
"""

from __future__ import annotations

import importlib
import pkgutil

from nas.spaces.base import (
    SPACES,
    Architecture,
    Decision,
    Masks,
    Node,
    SearchSpace,
    Weights,
    build_space,
    register_space,
)

for _package in pkgutil.iter_modules(__path__):
    if _package.ispkg:
        importlib.import_module(f"{__name__}.{_package.name}")

__all__ = [
    "SPACES",
    "Architecture",
    "Decision",
    "Masks",
    "Node",
    "SearchSpace",
    "Weights",
    "build_space",
    "register_space",
]
