"""Final selection (One-Shot Top / Small, Random, All On), pick files, and model size (params, MACs)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from torch import nn

from nas.errors import NasError
from nas.results.complexity import child_size, clear_size_cache, count_macs, count_params
from nas.results.selection import (
    all_on,
    one_shot_small,
    one_shot_top,
    random_group,
    to_archs,
    write_selection,
)
from nas.spaces import Architecture


def _rows(space, n: int = 500, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(n)))
    return [
        {
            "arch_id": a.id,
            "arch_json": a.to_json(),
            "oneshot_acc": rng.uniform(0.3, 0.9),
            "params": rng.randrange(10_000, 100_000),
        }
        for a in archs
    ]


def test_one_shot_top_draws_one_per_stratum_of_the_top(small_space):
    rows = _rows(small_space)
    ranked = sorted(rows, key=lambda r: -r["oneshot_acc"])
    rank = {r["arch_id"]: i for i, r in enumerate(ranked)}
    picks = one_shot_top(rows, k=10, top=100, rng=random.Random(1))
    assert len(picks) == 10 == len({p["arch_id"] for p in picks})
    assert [rank[p["arch_id"]] // 10 for p in picks] == list(
        range(10)
    )  # pick i from ranks 10i..10i+9
    again = one_shot_top(rows, k=10, top=100, rng=random.Random(1))
    assert picks == again  # randomness only through the rng passed in
    uneven = one_shot_top(rows[:23], k=10, top=100, rng=random.Random(2))  # strata of 2 or 3
    assert len({p["arch_id"] for p in uneven}) == 10
    with pytest.raises(NasError, match="exceeds"):
        one_shot_top(rows[:5], k=10, rng=random.Random(0))


def test_one_shot_small_picks_the_smallest_above_the_percentile(small_space):
    rows = _rows(small_space)
    threshold = np.percentile([r["oneshot_acc"] for r in rows], 90)
    picks = one_shot_small(rows, k=10, percentile=90)
    assert len(picks) == 10 and all(p["oneshot_acc"] > threshold for p in picks)
    others = [r for r in rows if r["oneshot_acc"] > threshold and r not in picks]
    assert others and max(p["params"] for p in picks) <= min(r["params"] for r in others)
    assert [p["params"] for p in picks] == sorted(p["params"] for p in picks)
    with pytest.raises(NasError, match="percentile"):
        one_shot_small(rows, k=10, percentile=99.5)
    with pytest.raises(NasError, match="lack 'params'"):
        one_shot_small([{**r, "params": None} for r in rows])


def test_random_and_all_on_groups(small_space):
    group = random_group(small_space, 10, random.Random(0))
    assert len(set(group)) == 10 and all(a.space is small_space for a in group)
    assert group == random_group(small_space, 10, random.Random(0))
    (on,) = all_on(small_space)
    assert on == small_space.all_on()
    with pytest.raises(NasError, match="random group"):
        random_group(small_space, small_space.count() + 1, random.Random(0))


def test_selection_files_round_trip(tmp_path, small_space):
    rows = _rows(small_space)
    archs = to_archs(one_shot_top(rows, k=4, top=20, rng=random.Random(0)), small_space)
    listing = write_selection(tmp_path / "picks", "top", archs)
    paths = listing.read_text().split()
    assert listing.name == "top.txt" and len(paths) == 4
    for i, (path, arch) in enumerate(zip(paths, archs, strict=True)):
        assert path.endswith(f"top_{i}_{arch.id}.json")
        assert Architecture.load(path, small_space) == arch
    (on_path,) = (
        write_selection(tmp_path / "picks", "all_on", all_on(small_space)).read_text().split()
    )
    assert Architecture.load(on_path, small_space) == small_space.all_on()
    with pytest.raises(NasError, match="group name"):
        write_selection(tmp_path, "a/b", archs)


def test_count_macs_of_known_layers():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, (3, 10, 10)) == 8 * 10 * 10 * 3 * 3 * 3
    grouped = nn.Conv2d(8, 16, 3, groups=4)  # 7x7 -> 5x5, 2 input channels per group
    assert count_macs(grouped, (8, 7, 7)) == 16 * 5 * 5 * 2 * 3 * 3
    linear = nn.Linear(20, 5)
    assert count_macs(linear, (20,)) == 5 * 20
    net = nn.Sequential(nn.Conv2d(1, 4, 2, stride=2), nn.Flatten(), nn.Linear(4 * 3 * 3, 7))
    assert count_macs(net, (1, 6, 6)) == 4 * 3 * 3 * 1 * 2 * 2 + 7 * 36
    assert count_params(linear) == 20 * 5 + 5
    with pytest.raises(NasError, match="input_shape"):
        count_macs(linear, (0,))


def test_child_size_is_the_stand_alone_count_and_cached(small_space):
    clear_size_cache()
    arch = small_space.sample(random.Random(0))
    kwargs = {"filters": 8, "cells": 3, "stages": 3}
    params, macs = child_size(small_space, arch, kwargs, (3, 8, 8))
    net = small_space.build_child(arch, **kwargs)
    assert params == count_params(net) and macs == count_macs(net, (3, 8, 8)) > 0
    assert child_size(small_space, arch, kwargs, (3, 8, 8)) == (params, macs)
    bigger = child_size(small_space, arch, {**kwargs, "filters": 16}, (3, 8, 8))
    assert bigger[0] > params and bigger[1] > macs  # network settings are part of the cache key
    on_params, _ = child_size(small_space, small_space.all_on(), kwargs, (3, 8, 8))
    assert on_params > params
