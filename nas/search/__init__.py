"""Searching with a trained supernet: strategies, the resumable search loop, results store, selection.

Names are imported lazily from their modules, so `nas.search.store` (stdlib only) loads without torch:
worker processes that only write results start quickly.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "complexity": ("child_size", "clear_size_cache", "count_macs", "count_params"),
    "driver": ("SearchSummary", "replay_or_evaluate"),
    "selection": (
        "all_on",
        "one_shot_small",
        "one_shot_top",
        "random_group",
        "to_archs",
        "write_selection",
    ),
    "store": ("ResultsStore",),
    "strategies": (
        "STRATEGIES",
        "RandomSearch",
        "RegularizedEvolution",
        "Strategy",
        "build_strategy",
    ),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"nas.search.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module 'nas.search' has no attribute {name!r}")
