"""Scheduled path dropout: measured drop rates against r^(1/k) and r, and the schedule."""

from __future__ import annotations

import math

import pytest
import torch

from nas.errors import NasError
from nas.samplers import PathDropout
from nas.spaces.oneshot_cell import OneShotCellSpace

N = 40_000  # ghost batches sampled; 5 standard deviations of a rate is < 0.013


def _within(measured: float, expected: float, n: int = N) -> bool:
    return abs(measured - expected) <= 5 * math.sqrt(expected * (1 - expected) / n) + 1e-9


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.3])
def test_end_of_training_rates_match_formula(rate):
    space = OneShotCellSpace()
    masks = PathDropout(rate).sample(space, N, 1.0, torch.Generator().manual_seed(0))
    for d in space.decisions:
        m = masks[d.name]
        k = d.fan_in
        assert _within(1 - m.mean().item(), rate ** (1 / k)), (d.name, 1 - m.mean().item())
        assert _within((m.sum(1) == 0).float().mean().item(), rate), d.name  # all k dropped: r


def test_paper_example_probabilities():
    drop = PathDropout(0.05)
    assert drop.drop_prob(2, 1.0) == pytest.approx(0.2236, abs=1e-3)
    assert drop.drop_prob(7, 1.0) == pytest.approx(0.6518, abs=1e-3)


def test_paths_drop_independently_within_a_decision():
    space = OneShotCellSpace()
    m = PathDropout(0.1).sample(space, N, 1.0, torch.Generator().manual_seed(1))["block0/ops"]
    p = 0.1 ** (1 / 7)
    both = ((m[:, 0] == 0) & (m[:, 1] == 0)).float().mean().item()
    assert _within(both, p * p)


def test_linear_schedule_ramps_from_zero():
    space = OneShotCellSpace()
    drop = PathDropout(0.1, "linear")
    gen = torch.Generator().manual_seed(2)
    assert all(
        bool(m.all()) for m in drop.sample(space, 1000, 0.0, gen).values()
    )  # nothing dropped at start
    for progress in (0.25, 0.5, 0.75):
        m = drop.sample(space, N, progress, gen)["block3/inputs"]
        assert _within(1 - m.mean().item(), progress * 0.1 ** (1 / 5))
    assert drop.drop_prob(7, 2.0) == drop.drop_prob(7, 1.0)  # clamped after the end


def test_constant_schedule_is_flat():
    drop = PathDropout(0.3, "constant")
    assert drop.drop_prob(4, 0.0) == drop.drop_prob(4, 0.7) == pytest.approx(0.3**0.25)


def test_keep_one_reenables_a_single_path():
    space = OneShotCellSpace()
    masks = PathDropout(0.5, keep_one=True).sample(space, N, 1.0, torch.Generator().manual_seed(3))
    for d in space.decisions:
        assert bool((masks[d.name].sum(1) >= 1).all())


def test_masks_are_reproducible_from_the_generator_state():
    space = OneShotCellSpace()
    gen = torch.Generator().manual_seed(4)
    state = gen.get_state()
    a = PathDropout(0.1).sample(space, 8, 0.5, gen)
    gen.set_state(state)
    b = PathDropout(0.1).sample(space, 8, 0.5, gen)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1, 1.5])
def test_rate_outside_open_interval_is_refused(rate):
    with pytest.raises(NasError, match=f"r={rate}"):
        PathDropout(rate)
