"""The paper's cell space: size, sampling distribution, mutation, masks, JSON, validation."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import pytest
import torch

from nas.errors import NasError
from nas.spaces import Architecture, Decision, build_space
from nas.spaces.oneshot_cell import OneShotCellSpace


def test_paper_space_size_is_computed():
    space = OneShotCellSpace()
    assert space.count() == 3 * 7 * 15 * 31 * 28**4 == 6_002_115_840
    # block i: 2^(2+i) - 1 input subsets, C(7,1) + C(7,2) op subsets
    for i in range(4):
        assert space.decision(f"block{i}/inputs").count() == 2 ** (2 + i) - 1
        assert space.decision(f"block{i}/ops").count() == 28


def test_decision_sample_is_uniform_over_valid_subsets():
    d = Decision("ops", ("a", "b", "c", "d"), min_k=1, max_k=2)  # 4 + 6 = 10 subsets
    rng = random.Random(0)
    n = 20_000
    counts = Counter(d.sample(rng) for _ in range(n))
    assert set(counts) == set(d.subsets()) and len(counts) == 10
    expected, sd = n / 10, math.sqrt(n * 0.1 * 0.9)
    assert all(abs(c - expected) < 5 * sd for c in counts.values())


def test_architecture_json_round_trip_and_id(small_space):
    rng = random.Random(1)
    archs = [small_space.sample(rng) for _ in range(50)]
    for a in archs:
        b = Architecture.from_json(a.to_json(), small_space)
        assert a == b and hash(a) == hash(b) and a.id == b.id and len(a.id) == 10
    assert len({a.id for a in archs}) == len(set(archs))


def test_mutate_changes_exactly_one_decision(small_space):
    rng = random.Random(2)
    a = small_space.sample(rng)
    for _ in range(100):
        b = small_space.mutate(a, rng)
        changed = [d.name for d in small_space.decisions if a[d.name] != b[d.name]]
        assert len(changed) == 1


def test_encode_masks_rows_match_choices(small_space):
    rng = random.Random(3)
    archs = [small_space.sample(rng) for _ in range(5)]
    masks = small_space.encode(archs)
    for d in small_space.decisions:
        assert masks[d.name].shape == (5, len(d.options))
        for row, a in zip(masks[d.name], archs, strict=True):
            assert [o for o, m in zip(d.options, row.tolist(), strict=True) if m] == list(a[d.name])


def test_enumerate_small_space_is_complete(small_space):
    archs = list(small_space.enumerate())
    assert len(archs) == len(set(archs)) == small_space.count()


def test_all_on_round_trips_and_enables_everything(small_space):
    on = small_space.all_on()
    masks = small_space.encode([on])
    assert all(bool(torch.all(m == 1)) for m in masks.values())
    assert Architecture.from_json(on.to_json(), small_space) == on


def test_space_rebuilds_from_spec():
    space = OneShotCellSpace(num_blocks=3, ops=["identity", "sep5x5"], max_ops=1)
    again = build_space(space.spec())
    assert again.fingerprint == space.fingerprint and again.count() == space.count()


@pytest.mark.parametrize(
    "choices, fragment",
    [
        ({"block0/inputs": ["prev"], "block0/ops": ["conv9x9"]}, "unknown option"),
        ({"block0/inputs": [], "block0/ops": ["identity"]}, "expected 1 to 2"),
        (
            {"block0/inputs": ["prev"], "block0/ops": ["identity", "sep3x3", "maxpool3x3"]},
            "expected 1 to 2",
        ),
        ({"block0/inputs": ["block3"], "block0/ops": ["identity"]}, "allowed"),
    ],
)
def test_bad_architecture_is_a_clear_error(small_space, choices, fragment):
    full = {"block1/inputs": ["prev"], "block1/ops": ["identity"], **choices}
    with pytest.raises(NasError, match=fragment) as err:
        small_space.architecture(full)
    assert "block0" in str(err.value)


def test_architecture_from_another_space_is_refused(small_space):
    other = OneShotCellSpace()
    text = other.sample(random.Random(0)).to_json()
    with pytest.raises(NasError, match="another configuration"):
        Architecture.from_json(text, small_space)
    with pytest.raises(NasError, match="malformed"):
        Architecture.from_json("{not json", small_space)
    with pytest.raises(NasError, match="choices"):
        Architecture.from_json(json.dumps({"space": "oneshot_cell"}), small_space)


def test_unknown_op_in_space_config_is_a_clear_error():
    with pytest.raises(NasError, match="unknown op.*conv9x9.*known ops"):
        OneShotCellSpace(ops=["identity", "conv9x9"])
