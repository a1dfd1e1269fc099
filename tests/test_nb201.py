"""The NAS-Bench-201 space: counting, arch strings, published parameter counts, supernet and children."""

from __future__ import annotations

import random

import pytest
import torch

from nas.errors import NasError
from nas.samplers import FairSampler
from nas.spaces import build_space
from nas.spaces.interface import TRUNK
from nas.spaces.nb201 import EDGES, NB201_OPS, NB201Space
from tests.conftest import randomized_supernet

RESNET_LIKE = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"
ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
SMALL = {"filters": 4, "cells": 3, "stages": 3, "num_classes": 5}  # 8x8 images: 8 -> 4 -> 2
F64 = {"rtol": 1e-8, "atol": 1e-10}


@pytest.fixture(scope="module")
def space():
    return NB201Space()


def _net(space, dtype=torch.float64):
    return randomized_supernet(space, SMALL, dtype)


def _x(n, seed=0):
    return torch.randn(
        n, 3, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def test_count_enumerate_and_spec(space):
    assert [d.name for d in space.decisions] == ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
    assert all(d.options == NB201_OPS and d.min_k == d.max_k == 1 for d in space.decisions)
    assert space.count() == 5**6 == 15625
    assert len(set(space.enumerate())) == 15625
    again = build_space(space.spec())
    assert isinstance(again, NB201Space) and again.fingerprint == space.fingerprint
    assert FairSampler().copies(space) == 5  # one model per op: every op of every edge once


def test_arch_strings_round_trip_for_every_architecture(space):
    strings = set()
    for arch in space.enumerate():
        text = space.to_arch_string(arch)
        assert space.from_arch_string(text) == arch
        strings.add(text)
    assert len(strings) == 15625
    for text in (RESNET_LIKE, ALL_CONV3, ALL_NONE):
        assert space.to_arch_string(space.from_arch_string(text)) == text
    arch = space.from_arch_string(RESNET_LIKE)
    assert arch["1<-0"] == ("nor_conv_3x3",) and arch["3<-0"] == ("skip_connect",)
    assert arch["2<-0"] == arch["3<-1"] == ("none",)
    # inputs listed in another order name the same architecture
    assert (
        space.from_arch_string(
            "|nor_conv_3x3~0|+|nor_conv_3x3~1|none~0|+|none~2|skip_connect~0|none~1|"
        )
        == arch
    )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "1 node group"),
        ("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|", "2 node group"),
        ("nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "start and end with '|'"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 has entry 'none~1'"),
        ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "node 2 has entry 'none~0'"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", r"node 2 lists inputs \[0\]"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "expected 'op~i'"),
    ],
)
def test_malformed_strings_are_refused_clearly(space, text, fragment):
    with pytest.raises(NasError, match=fragment) as err:
        space.from_arch_string(text)
    assert "|" in str(err.value)  # the message shows the string or an example of a good one


def test_bad_ops_and_all_on_strings_are_refused(space):
    with pytest.raises(NasError, match="unknown op.*'sep3x3'"):
        NB201Space(ops=["none", "sep3x3"])
    with pytest.raises(NasError, match="each once"):
        NB201Space(ops=["none", "none"])
    with pytest.raises(NasError, match="list of op names"):
        NB201Space(ops="none")
    with pytest.raises(NasError, match="one op per edge"):
        space.to_arch_string(space.all_on())
    with pytest.raises(NasError, match="multiple of model.stages=3"):
        space.build_supernet(filters=4, cells=4, stages=3)


def _closed_form_params(edge_ops, c=16, n=5, classes=10, stages=3, in_channels=3):
    """Parameters of the benchmark's network: conv weights k·k·c_in·c_out, BN 2c, linear c·classes + classes."""
    per_op = {"nor_conv_3x3": lambda w: 9 * w * w + 2 * w, "nor_conv_1x1": lambda w: w * w + 2 * w}
    total = 9 * in_channels * c + 2 * c  # stem conv + BN
    width = c
    for stage in range(stages):
        if stage:  # conv_a (stride 2) + BN, conv_b + BN, 1x1 shortcut conv
            total += 9 * width * 2 * width + 4 * width + 9 * (2 * width) ** 2 + 4 * width
            total += width * 2 * width
            width *= 2
        total += n * sum(per_op.get(op, lambda w: 0)(width) for op in edge_ops)
    return total + 2 * width + width * classes + classes  # final BN, classifier


@pytest.mark.parametrize(
    "text, published",
    [
        (ALL_CONV3, 1.531e6),
        (ALL_NONE, 0.073e6),
        (RESNET_LIKE, None),
        (
            "|skip_connect~0|+|avg_pool_3x3~0|skip_connect~1|+|none~0|avg_pool_3x3~1|skip_connect~2|",
            0.073e6,
        ),
        (
            "|nor_conv_1x1~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|",
            None,
        ),
    ],
)
def test_standalone_parameter_counts_match_the_benchmark(space, text, published):
    arch = space.from_arch_string(text)
    with torch.device("meta"):  # count without allocating
        child = space.build_child(arch, filters=16, cells=15, stages=3, num_classes=10)
    count = sum(p.numel() for p in child.parameters())
    assert count == _closed_form_params([arch[e][0] for e in EDGES])
    if published is not None:  # the benchmark's smallest and largest CIFAR-10 networks
        assert abs(count - published) / published < 0.01, count
    if text == ALL_CONV3:
        assert count == 1_531_546
    if text == RESNET_LIKE:
        assert count == 73_306 + 5 * 2 * (9 * 16 * 16 + 32 + 9 * 32 * 32 + 64 + 9 * 64 * 64 + 128)


def test_gathered_equals_dense_and_all_on_is_the_default(space):
    net = _net(space)
    x = _x(22)  # 5 ghost batches of 5, the last one of 2
    weights = space.encode([space.sample(random.Random(s)) for s in range(5)])
    results = []
    for dense in (True, False):
        net.zero_grad()
        out = net(x, weights, 5, dense=dense)
        out.square().sum().backward()
        results.append(
            (
                out.detach(),
                {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None},
            )
        )
    (ref, ref_grads), (out, grads) = results
    torch.testing.assert_close(out, ref, **F64)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], **F64)
    with torch.no_grad():
        torch.testing.assert_close(
            net(x, None, 5), net(x, space.full_masks(1), 5, dense=True), **F64
        )


def test_extracted_child_computes_the_supernet_path(space):
    net = _net(space)
    x = _x(6, seed=1)
    own = {n for n, _ in net.named_parameters()}
    for text in (RESNET_LIKE, ALL_CONV3, ALL_NONE):
        arch = space.from_arch_string(text)
        child = net.extract(arch, copy_weights=True).train()
        assert {n for n, _ in child.named_parameters()} <= own  # same names: a copy one to one
        torch.testing.assert_close(child(x), net(x, space.encode([arch]), None), **F64)


def test_trunk_and_used_paths_add_up_to_the_child(space):
    net = _net(space)
    paths = net.parameter_paths()
    assert set(net.path_keys()) == {(e, o) for e in EDGES for o in ("nor_conv_1x1", "nor_conv_3x3")}
    for text in (RESNET_LIKE, ALL_CONV3, ALL_NONE):
        arch = space.from_arch_string(text)
        used = net.paths_used(arch)
        assert TRUNK in used
        size = sum(p.numel() for n, p in net.named_parameters() if paths[n] in used)
        assert size == sum(p.numel() for p in net.extract(arch).parameters())


def test_node_without_inputs_is_zeros(space):
    """Every edge into node 3 off: each cell outputs zeros, so the final BN gives β for every pixel."""
    net = _net(space)
    arch = space.from_arch_string(
        "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|none~2|"
    )
    with torch.no_grad():
        logits = net(_x(8, seed=2), space.encode([arch] * 2), 4)
        expected = net.classifier(torch.relu(net.final_bn.bias)).expand(8, -1)
    torch.testing.assert_close(logits, expected, **F64)


def test_affine_free_search_cells_keep_the_trunk_and_children_as_the_benchmark(space):
    """cell_bn_affine=False (the benchmark's search runs): no BN scale and shift in the cells'
    ops, the trunk's BN unchanged; children are the benchmark's networks and, extracted with the
    supernet's weights, compute its path."""
    free = NB201Space(cell_bn_affine=False)
    assert "cell_bn_affine" not in space.spec()  # specs written before the option read the same
    again = build_space(free.spec())
    assert again.cell_bn_affine is False and again.fingerprint == space.fingerprint
    torch.manual_seed(0)
    net = free.build_supernet(**SMALL).double()
    norms = {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    with torch.no_grad():
        for m in norms.values():
            if m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    assert all(m.affine == (".edges." not in n) for n, m in norms.items())
    full = sum(p.numel() for p in space.build_supernet(**SMALL).parameters())
    # every cell (one per stage at widths 4, 8, 16): 6 edges x 2 convolutions x (scale + shift)
    assert full - sum(p.numel() for p in net.parameters()) == sum(6 * 2 * 2 * c for c in (4, 8, 16))
    x = _x(6, seed=3)
    for text in (RESNET_LIKE, ALL_CONV3):
        arch = free.from_arch_string(text)
        child = net.extract(arch, copy_weights=True).train()
        assert sum(p.numel() for p in child.parameters()) == sum(
            p.numel() for p in space.build_child(arch, **SMALL).parameters()
        )
        torch.testing.assert_close(child(x), net(x, free.encode([arch]), None), **F64)
