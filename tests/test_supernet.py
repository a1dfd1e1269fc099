"""The supernet: parameter counts, masked paths, extraction of stand-alone children."""

from __future__ import annotations

import random

import pytest
import torch

from nas.errors import NasError
from nas.spaces.oneshot_cell import OneShotCellSpace

PAPER_ALL_ON = {16: 1.3e6, 32: 4.8e6, 64: 18.5e6}  # Table 1, "All On" row


@pytest.mark.parametrize("filters", sorted(PAPER_ALL_ON))
def test_all_on_parameter_count_matches_paper(filters):
    with torch.device("meta"):  # count without allocating 18M floats
        net = OneShotCellSpace().build_supernet(filters=filters, cells=6, num_classes=10)
    count = sum(p.numel() for p in net.parameters())
    assert abs(count - PAPER_ALL_ON[filters]) / PAPER_ALL_ON[filters] < 0.15, count


def _dense_reference(net, x, masks, ghost):
    """Each ghost batch through the child of its own architecture (weights copied)."""
    space = net.space
    outs = []
    for g, chunk in enumerate(x.split(ghost)):
        choices = {}
        for d in space.decisions:
            row = masks[d.name][g]
            choices[d.name] = tuple(o for o, m in zip(d.options, row.tolist(), strict=True) if m)
        child = net.extract(space.architecture(choices), copy_weights=True).train()
        outs.append(child(chunk))
    return torch.cat(outs)


def test_masked_supernet_equals_extracted_children(small_space):
    torch.manual_seed(0)
    net = small_space.build_supernet(filters=4, cells=3, stages=2, num_classes=6)
    with torch.no_grad():  # non-trivial BN affine parameters, so a leak through β would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    rng = random.Random(0)
    archs = [small_space.sample(rng) for _ in range(4)]
    masks = small_space.encode(archs)
    x = torch.randn(4 * 6, 3, 8, 8)
    torch.testing.assert_close(
        net(x, masks, 6), _dense_reference(net, x, masks, 6), rtol=1e-4, atol=1e-5
    )


def test_extracted_child_has_only_chosen_paths(small_space):
    net = small_space.build_supernet(filters=4, cells=2, stages=2)
    arch = small_space.architecture(
        {
            "block0/inputs": ["prev"],
            "block0/ops": ["identity"],
            "block1/inputs": ["block0"],
            "block1/ops": ["maxpool3x3"],
        }
    )
    child = net.extract(arch)
    names = {n for n, _ in child.named_parameters()}
    assert not any("sep3x3" in n or "prev_prev" in n for n in names)
    assert sum(p.numel() for p in child.parameters()) < sum(p.numel() for p in net.parameters()) / 2
    assert names <= {n for n, _ in net.named_parameters()}  # same names: weights copy one to one


def test_all_off_block_outputs_zero_not_bn_shift(small_space):
    """A ghost batch whose block inputs all drop gets the same output as with that block's ops off."""
    torch.manual_seed(0)
    net = small_space.build_supernet(filters=4, cells=1, stages=1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.fill_(0.7)
    x = torch.randn(4, 3, 8, 8)
    masks = small_space.full_masks(1)
    no_inputs = {**masks, "block0/inputs": torch.zeros(1, 2)}
    no_ops = {**masks, "block0/ops": torch.zeros(1, 3)}
    torch.testing.assert_close(net(x, no_inputs, 4), net(x, no_ops, 4))


def test_mask_shape_errors_are_clear(small_space):
    net = small_space.build_supernet(filters=4, cells=1, stages=1)
    bad = {**small_space.full_masks(1), "block0/ops": torch.ones(1, 5)}
    with pytest.raises(NasError, match=r"block0/ops.*expected \[rows, 3\]"):
        net(torch.randn(2, 3, 8, 8), bad, 2)
    with pytest.raises(NasError, match="one per ghost batch"):
        net(torch.randn(8, 3, 8, 8), small_space.full_masks(3), 2)


@pytest.mark.parametrize(
    "kwargs, fragment", [({"filters": 0}, "filters=0"), ({"cells": 1, "stages": 2}, "cells=1")]
)
def test_bad_network_sizes_are_clear(small_space, kwargs, fragment):
    with pytest.raises(NasError, match=fragment):
        small_space.build_supernet(**kwargs)
