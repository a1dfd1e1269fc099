"""Samplers: uniform single paths (SPOS) and strict fairness (FairNAS) against their definitions.

Path dropout has its own measured-rate tests in test_dropout.py; FairNAS's step (its m models' loss
and decay) against m separate backward passes in test_fairnas.py.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from nas.errors import NasError
from nas.modules import OneShotModule
from nas.samplers import FairSampler, PathDropout, UniformSampler, build_sampler
from nas.spaces import build_space
from nas.spaces.oneshot_cell import OneShotCellSpace


def test_uniform_draws_one_valid_architecture_per_ghost_batch(small_space):
    weights = UniformSampler().sample(small_space, 6, 0.5, torch.Generator().manual_seed(0))
    archs = [small_space.decode(weights, g) for g in range(6)]
    assert all(weights[d.name].shape == (6, d.fan_in) for d in small_space.decisions)
    assert len(set(archs)) > 1  # independent draws per ghost batch


def test_uniform_follows_the_space_distribution(small_space):
    """Every op subset of a decision (1 or 2 of 3 ops: 6 subsets) is drawn with frequency 1/6."""
    n = 12_000
    weights = UniformSampler().sample(small_space, n, 0.0, torch.Generator().manual_seed(1))
    d = small_space.decision("block1/ops")
    counts = Counter(tuple(row) for row in weights[d.name].tolist())
    assert len(counts) == d.count() == 6
    sd = math.sqrt(n * (1 / 6) * (5 / 6))
    assert all(abs(c - n / 6) < 5 * sd for c in counts.values())


def test_uniform_is_reproducible_from_the_generator_state(small_space):
    gen = torch.Generator().manual_seed(2)
    state = gen.get_state()
    a = UniformSampler().sample(small_space, 4, 0.0, gen)
    gen.set_state(state)
    b = UniformSampler().sample(small_space, 4, 0.0, gen)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def nb201():
    return build_space({"name": "nb201"})


def test_fair_trains_every_option_of_every_decision_its_share_each_step(nb201):
    sampler, ghosts = FairSampler(), 3
    m = sampler.copies(nb201)
    assert m == 5  # the largest fan-in
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        weights = sampler.sample(nb201, ghosts, 0.0, gen)
        for d in nb201.decisions:
            rows = weights[d.name].view(m, ghosts, d.fan_in)
            assert bool((rows == rows[:, :1]).all())  # one model per copy: all its ghosts agree
            assert bool((rows.sum(-1) == 1).all())  # exactly one option per model
            assert rows[:, 0].sum(0).tolist() == [1.0] * d.fan_in  # each option exactly once


def test_fair_with_shorter_decisions_cycles_through_fresh_permutations():
    space = OneShotCellSpace(num_blocks=1, ops=["identity", "sep3x3", "maxpool3x3"], max_ops=1)
    space.decisions = tuple(d for d in space.decisions if d.name == "block0/ops")  # 1-of-3 only
    weights = FairSampler().sample(space, 1, 0.0, torch.Generator().manual_seed(4))
    assert weights["block0/ops"].sum(0).tolist() == [1.0, 1.0, 1.0]

    class Mixed:  # fan-ins 5 and 2: the 2-option decision is trained 2 or 3 times of 5
        name = "mixed"
        decisions = (
            build_space({"name": "nb201"}).decisions[0],
            type(space.decisions[0])("pair", ("a", "b"), 1, 1),
        )

    gen = torch.Generator().manual_seed(5)
    for _ in range(50):
        counts = FairSampler().sample(Mixed, 1, 0.0, gen)["pair"].sum(0).tolist()
        assert sorted(counts) == [2.0, 3.0]


def test_fair_refuses_multi_choice_decisions_clearly(small_space):
    with pytest.raises(NasError, match=r"sampler=fair needs .*block0/inputs.*sampler=uniform"):
        OneShotModule(small_space, FairSampler(), filters=4, cells=2, stages=2)


def test_samplers_round_trip_through_their_spec():
    for sampler in (PathDropout(0.2, "constant", True), UniformSampler(), FairSampler()):
        again = build_sampler(sampler.spec())
        assert type(again) is type(sampler) and again.spec() == sampler.spec()
    with pytest.raises(NasError, match="unknown sampler 'gumbel'.*known samplers"):
        build_sampler({"name": "gumbel"})


def test_module_saves_the_sampler_and_search_rebuilds_it(tmp_path, small_space):
    from nas.search.checkpoint import load_supernet_module

    module = OneShotModule(small_space, UniformSampler(), filters=4, cells=2, stages=2)
    assert module.hparams["sampler"] == {"name": "uniform"}
    path = tmp_path / "uniform.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    assert isinstance(load_supernet_module(str(path), torch.device("cpu")).sampler, UniformSampler)
    # a checkpoint written when path dropout was configured by model keys still loads
    legacy = {k: v for k, v in module.hparams.items() if k != "sampler"}
    legacy.update(dropout_rate=0.3, dropout_schedule="constant", keep_one_path=False)
    torch.save({"hyper_parameters": legacy, "state_dict": module.state_dict()}, path)
    loaded = load_supernet_module(str(path), torch.device("cpu")).sampler
    assert isinstance(loaded, PathDropout) and (loaded.rate, loaded.schedule) == (0.3, "constant")


def test_uniform_single_path_step_trains_only_the_drawn_architecture(small_space):
    """With one ghost batch per batch (SPOS), only the drawn architecture's weights get gradients."""
    module = OneShotModule(
        small_space, UniformSampler(), filters=4, cells=2, stages=2, ghost_size=8, l2=0.0
    )
    rng_state = module.mask_generator.get_state()
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    module.sampled_loss(x, y, 0.0)["loss"].backward()
    module.mask_generator.set_state(rng_state)
    weights = UniformSampler().sample(small_space, 1, 0.0, module.mask_generator)
    arch = small_space.decode(weights)
    used, paths = module.supernet.paths_used(arch), module.supernet.parameter_paths()
    grads = {n.removeprefix("supernet."): p.grad for n, p in module.named_parameters()}
    assert {paths[n] for n, g in grads.items() if g is not None} <= used


def test_single_path_samplers_validate_on_fixed_random_architectures(small_space):
    """Their all-on network is never trained; path dropout validates on it (None = all-on)."""
    assert PathDropout().eval_weights(small_space, 3, 0) is None
    for sampler in (UniformSampler(), FairSampler()):
        a, b = sampler.eval_weights(small_space, 3, 7), sampler.eval_weights(small_space, 3, 7)
        assert all(torch.equal(a[k], b[k]) for k in a)  # the same batch: the same architectures
        archs = [small_space.decode(a, g) for g in range(3)]  # valid ones, one per ghost batch
        other = sampler.eval_weights(small_space, 3, 8)
        assert archs != [small_space.decode(other, g) for g in range(3)]
