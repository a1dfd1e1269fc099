"""The paper's final-selection protocols over search results, and writing the picks as JSON files.

Rows are dicts as returned by `ResultsStore.results()`/`ranking()` (arch_id, arch_json, oneshot_acc,
params, ...). The selection functions are pure: they neither read files nor touch global randomness.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nas.atomic import atomic_path, write_text
from nas.errors import check
from nas.spaces.base import Architecture, SearchSpace

Row = Mapping


def _require(rows: Sequence[Row], key: str, why: str) -> None:
    check(len(rows) > 0, f"no search results to select from; run search.py first ({why})")
    bad = [r.get("arch_id", "?") for r in rows if r.get(key) is None]
    check(not bad, f"{len(bad)} result(s) lack {key!r} (e.g. {bad[:3]}); {why}")


def _by_accuracy(rows: Sequence[Row]) -> list[Row]:
    # Stable sort: equal scores keep the caller's order (the store's ranking breaks ties by seq).
    return sorted(rows, key=lambda r: -float(r["oneshot_acc"]))


def one_shot_top(
    rows: Sequence[Row], k: int = 10, top: int = 100, *, rng: random.Random
) -> list[Row]:
    """One-Shot Top: a stratified sample of `k` from the `top` best by one-shot accuracy.

    The sorted top is split into `k` consecutive strata of (nearly) equal size; one row is drawn
    uniformly from each, so the picks span the whole top rather than bunching at its head.
    """
    _require(rows, "oneshot_acc", "every row needs a one-shot accuracy")
    check(
        isinstance(k, int) and k >= 1,
        f"selection k={k!r} must be an integer >= 1 (the paper uses 10)",
    )
    best = _by_accuracy(rows)[: min(top, len(rows))]
    check(
        k <= len(best),
        f"selection k={k} exceeds the {len(best)} candidates of the top {top} "
        f"({len(rows)} results); lower k or score more architectures",
    )
    n = len(best)
    return [rng.choice(best[i * n // k : (i + 1) * n // k]) for i in range(k)]


def one_shot_small(rows: Sequence[Row], k: int = 10, percentile: float = 90) -> list[Row]:
    """One-Shot Small: the `k` fewest-parameter rows whose one-shot accuracy exceeds `percentile`."""
    _require(rows, "oneshot_acc", "every row needs a one-shot accuracy")
    _require(rows, "params", "store parameter counts with the results (see nas.results.complexity)")
    check(
        0 <= percentile < 100,
        f"selection percentile={percentile!r} must be in [0, 100) (the paper: about 90)",
    )
    threshold = float(np.percentile([float(r["oneshot_acc"]) for r in rows], percentile))
    good = [r for r in rows if float(r["oneshot_acc"]) > threshold]
    check(
        len(good) >= k,
        f"only {len(good)} result(s) exceed the {percentile}th percentile of one-shot "
        f"accuracy ({threshold:.4f}), fewer than k={k}; lower the percentile or k, or score more architectures",
    )
    # Fewest parameters first; among equal sizes the more accurate one.
    return sorted(good, key=lambda r: (int(r["params"]), -float(r["oneshot_acc"])))[:k]


def random_group(space: SearchSpace, k: int, rng: random.Random) -> list[Architecture]:
    """Random: `k` distinct architectures from the space's distribution, ignoring scores."""
    check(
        isinstance(k, int) and 1 <= k <= space.count(),
        f"random group k={k!r} must be an integer in [1, {space.count():,}] (the space's size)",
    )
    picks: dict[Architecture, None] = {}
    while len(picks) < k:
        picks[space.sample(rng)] = None
    return list(picks)


def all_on(space: SearchSpace) -> list[Architecture]:
    """All On: the group holding the single architecture with every path enabled."""
    return [space.all_on()]


def to_archs(rows: Sequence[Row], space: SearchSpace) -> list[Architecture]:
    """The architectures of result rows (parsed from their `arch_json`, checked against `space`)."""
    return [Architecture.from_json(r["arch_json"], space) for r in rows]


def write_selection(directory: str | Path, name: str, archs: Sequence[Architecture]) -> Path:
    """Write `<name>_<i>_<id>.json` per architecture and `<name>.txt` listing their absolute paths.

    The list feeds a Hydra multirun: `python train.py -m arch=$(paste -sd, <name>.txt)`.
    """
    check(
        bool(re.fullmatch(r"[A-Za-z0-9_.-]+", name)),
        f"selection group name {name!r} must use only letters, digits, '_', '.', '-' (it becomes a file name)",
    )
    check(len(archs) > 0, f"selection group {name!r} is empty; nothing to write")
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, arch in enumerate(archs):
        path = directory / f"{name}_{i}_{arch.id}.json"
        with atomic_path(path) as tmp:  # a retraining sweep may read these while a search rewrites
            arch.save(tmp)
        paths.append(path)
    return write_text(directory / f"{name}.txt", "".join(f"{p}\n" for p in paths))
