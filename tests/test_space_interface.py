"""Every registered space through the same checks: the written supernet interface, generically.

A new space package is picked up here automatically (`nas.spaces.SPACES`); it passes when its space,
supernet and child follow `nas.spaces.interface.Supernet`.
"""

from __future__ import annotations

import random

import pytest
import torch

from nas.samplers import PathDropout
from nas.spaces import SPACES, Architecture
from nas.spaces.interface import TRUNK, Supernet
from tests.conftest import SMALL_SPECS, SPACE_NETWORKS, example_input, randomized_supernet

NETWORK = {"filters": 4, "cells": 2, "stages": 2, "num_classes": 5, "in_channels": 3}
F64 = {"rtol": 1e-8, "atol": 1e-10}  # two summation orders agree to ~1e-12 in float64


@pytest.fixture(params=sorted(SPACES))
def space(request):
    return SPACES[request.param](**SMALL_SPECS.get(request.param, {}))


def _net(space, dtype=torch.float64):
    return randomized_supernet(space, SPACE_NETWORKS.get(space.name, NETWORK), dtype)


def _x(space, n, dtype=torch.float64, seed=0):
    return example_input(space.name, n, dtype, seed)


def _archs(space, n, seed=0):
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(n)]


def test_count_and_enumerate(space):
    product = 1
    for d in space.decisions:
        product *= d.count()
    assert space.count() == product
    if space.count() <= 20_000:
        assert len(set(space.enumerate())) == space.count()


def test_sample_mutate_encode_json_round_trip(space):
    rng = random.Random(1)
    archs = _archs(space, 30, seed=1)
    for arch in archs:
        again = Architecture.from_json(arch.to_json(), space)
        assert again == arch and again.id == arch.id
        mutant = space.mutate(arch, rng)
        assert sum(arch[d.name] != mutant[d.name] for d in space.decisions) == 1
    weights = space.encode(archs)
    for d in space.decisions:
        for row, arch in zip(weights[d.name].tolist(), archs, strict=True):
            assert tuple(o for o, w in zip(d.options, row, strict=True) if w) == arch[d.name]


def test_supernet_follows_the_interface(space):
    net = _net(space, torch.float32)
    assert isinstance(net, Supernet) and net.space is space
    all_on = net(_x(space, 8, torch.float32), None, 4)
    sampled = net(_x(space, 8, torch.float32), space.encode(_archs(space, 2)), 4)
    for out in (all_on, sampled):
        classes = SPACE_NETWORKS.get(space.name, NETWORK)["num_classes"]
        assert out.shape[0] == 8 and out.shape[-1] == classes and bool(torch.isfinite(out).all())


def test_gathered_equals_dense_forward_and_gradients(space):
    net = _net(space)
    archs = space.encode(_archs(space, 5, seed=2))
    dropped = PathDropout(0.5, "constant").sample(space, 5, 1.0, torch.Generator().manual_seed(3))
    for weights in (archs, dropped):
        results = []
        for dense in (True, False):
            net.zero_grad()
            # 5 ghost batches, the last one smaller
            out = net(_x(space, 22), weights, 5, dense=dense)
            out.square().sum().backward()
            grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
            results.append((out.detach(), grads))
        (ref, ref_grads), (out, grads) = results
        torch.testing.assert_close(out, ref, **F64)
        assert grads.keys() == ref_grads.keys()
        for name in grads:
            torch.testing.assert_close(grads[name], ref_grads[name], **F64)


def test_extracted_child_computes_the_supernet_path(space):
    net = _net(space)
    x = _x(space, 6)
    for arch in _archs(space, 2, seed=4):
        child = net.extract(arch, copy_weights=True).train()
        torch.testing.assert_close(child(x), net(x, space.encode([arch]), None), **F64)


def test_every_weight_belongs_to_one_declared_path_or_the_trunk(space):
    net = _net(space)
    paths = net.parameter_paths()
    names = {n for n, _ in net.named_parameters()}
    assert set(paths) == names
    declared = set(net.path_keys())
    assert all(key == TRUNK or key in declared for key in paths.values())
    sizes: dict[tuple, int] = {}
    for name, p in net.named_parameters():
        sizes[paths[name]] = sizes.get(paths[name], 0) + p.numel()
    own = dict(net.named_parameters())
    for arch in _archs(space, 4, seed=5):
        used = net.paths_used(arch)
        child = net.extract(arch)
        child_params = dict(child.named_parameters())
        assert all(own[n].shape == p.shape for n, p in child_params.items())
        # the child holds exactly the trunk and the paths the architecture uses
        assert {paths[n] for n in child_params} == {k for k in used if sizes.get(k)}
        assert sum(p.numel() for p in child_params.values()) == sum(sizes.get(k, 0) for k in used)
        # and only those receive gradients through the supernet
        net.zero_grad()
        net(_x(space, 4), space.encode([arch]), None).sum().backward()
        touched = {paths[n] for n, p in net.named_parameters() if p.grad is not None}
        assert touched <= used


def test_masked_l2_counts_each_used_path_once_per_architecture(space):
    net = _net(space)
    paths = net.parameter_paths()
    for arch in _archs(space, 3, seed=6):
        used = net.paths_used(arch)
        expected = sum(
            p.detach().square().sum()
            for n, p in net.named_parameters()
            if p.dim() > 1 and paths[n] in used
        )
        l2 = net.l2_penalty(space.encode([arch]))
        torch.testing.assert_close(l2.double(), expected.double(), rtol=1e-6, atol=1e-8)


def test_real_valued_weights_get_the_finite_difference_gradient(space):
    """Path weights in (0.2, 1) are multiplied in; the gradient reaching them is d(loss)/d(weight)."""
    net = _net(space)
    x, gen = _x(space, 8, seed=7), torch.Generator().manual_seed(8)
    weights = {
        d.name: (0.2 + 0.8 * torch.rand(2, d.fan_in, generator=gen, dtype=torch.float64))
        for d in space.decisions
    }
    for w in weights.values():
        w.requires_grad_(True)

    def loss(ws):
        return net(x, ws, 4).square().mean()

    loss(weights).backward()
    eps = 1e-7  # small: ReLU and max-pool kinks lie within 1e-6 of some probes
    probe = random.Random(9)
    for d in random.Random(10).sample(space.decisions, min(3, len(space.decisions))):
        g, j = probe.randrange(2), probe.randrange(d.fan_in)
        with torch.no_grad():
            plus = {k: v.detach().clone() for k, v in weights.items()}
            minus = {k: v.detach().clone() for k, v in weights.items()}
            plus[d.name][g, j] += eps
            minus[d.name][g, j] -= eps
            numeric = (loss(plus) - loss(minus)) / (2 * eps)
        analytic = weights[d.name].grad[g, j]
        torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-9)
