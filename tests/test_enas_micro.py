"""The ENAS micro space and networks: counts, loose ends, hand-checked wiring, supernet = child."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from nas.errors import NasError
from nas.spaces.enas_micro import MICRO_OPS, EnasMicroSpace, loose_ends
from nas.spaces.interface import TRUNK
from tests.conftest import randomized_supernet

NETWORK = {"filters": 4, "cells": 2, "stages": 2, "num_classes": 5, "in_channels": 3}
F64 = {"rtol": 1e-8, "atol": 1e-10}


def _x(n, seed=0):
    return torch.randn(
        n, 3, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def _arch(space, cells: dict[str, list[tuple[int, int, str, str]]]):
    """An architecture from (in_a, in_b, op_a, op_b) per node 2, 3, ... of each cell."""
    choices = {}
    for cell, nodes in cells.items():
        for n, (a, b, op_a, op_b) in enumerate(nodes, start=2):
            choices[f"{cell}/node{n}/in_a"] = [f"{cell}/{a}"]
            choices[f"{cell}/node{n}/in_b"] = [f"{cell}/{b}"]
            choices[f"{cell}/node{n}/op_a"] = [op_a]
            choices[f"{cell}/node{n}/op_b"] = [op_b]
    return space.architecture(choices)


# nodes=4: normal node 2 = sep3x3(0) + maxpool(0), node 3 = identity(2) + sep5x5(1) -> loose (3,);
# reduce node 2 = avgpool(1) + sep3x3(1), node 3 = sep5x5(0) + identity(0) -> loose (2, 3)
HAND = {
    "normal": [(0, 0, "sep3x3", "maxpool3x3"), (2, 1, "identity", "sep5x5")],
    "reduce": [(1, 1, "avgpool3x3", "sep3x3"), (0, 0, "sep5x5", "identity")],
}


def test_decisions_nodes_and_count():
    space = EnasMicroSpace()
    per_cell = math.prod(n * n * 25 for n in range(2, 7))
    assert space.count() == per_cell**2
    assert [d.name for d in space.decisions[:4]] == [
        "normal/node2/in_a",
        "normal/node2/in_b",
        "normal/node2/op_a",
        "normal/node2/op_b",
    ]
    assert len(space.decisions) == 2 * 5 * 4 and space.decisions[20].name == "reduce/node2/in_a"
    d = space.decision("reduce/node4/in_b")
    assert d.pointer and d.options == ("reduce/0", "reduce/1", "reduce/2", "reduce/3")
    assert not space.decision("normal/node4/op_a").pointer
    assert space.decision("normal/node4/op_a").options == MICRO_OPS
    nodes = space.nodes()
    assert [(n.name, n.at, n.when) for n in nodes[:3]] == [
        ("normal/0", "normal/node2/in_a", "before"),
        ("normal/1", "normal/node2/in_a", "before"),
        ("normal/2", "normal/node2/op_b", "after"),
    ]
    assert [n.name for n in nodes] == [f"{c}/{k}" for c in ("normal", "reduce") for k in range(7)]
    assert space.spec() == {"name": "enas_micro", "nodes": 7, "ops": list(MICRO_OPS)}


def test_enumerate_small_space():
    space = EnasMicroSpace(nodes=3, ops=["sep3x3", "identity"])
    assert space.count() == (2 * 2 * 2 * 2) ** 2  # in_a, in_b, op_a, op_b of node 2, two cells
    archs = list(space.enumerate())
    assert len(archs) == len(set(archs)) == space.count() == 256
    # both inputs may be the same node
    assert any(a["normal/node2/in_a"] == a["normal/node2/in_b"] for a in archs)


@pytest.mark.parametrize(
    "kwargs",
    [{"nodes": 2}, {"nodes": "7"}, {"ops": "sep3x3"}, {"ops": ["conv3x3"]}, {"ops": []}],
)
def test_bad_space_settings_are_refused(kwargs):
    with pytest.raises(NasError, match="search_space"):
        EnasMicroSpace(**kwargs)


def test_cells_must_divide_into_stages():
    with pytest.raises(NasError, match="multiple of model.stages"):
        EnasMicroSpace(nodes=3).build_supernet(**{**NETWORK, "cells": 3})


def test_loose_ends_by_hand():
    space = EnasMicroSpace(nodes=4)
    arch = _arch(space, HAND)
    assert loose_ends(arch, "normal") == (3,)
    assert loose_ends(arch, "reduce") == (2, 3)
    space5 = EnasMicroSpace(nodes=5)
    arch = _arch(
        space5,
        {
            # node 2 takes 0 twice, node 3 takes 2 and 2, node 4 takes 3 and 0: 1 and 4 unused
            "normal": [
                (0, 0, "identity", "identity"),
                (2, 2, "sep3x3", "sep3x3"),
                (3, 0, "identity", "sep5x5"),
            ],
            "reduce": [
                (1, 0, "identity", "identity"),
                (1, 1, "sep3x3", "sep3x3"),
                (1, 1, "identity", "sep5x5"),
            ],
        },
    )
    assert loose_ends(arch, "normal") == (1, 4)
    assert loose_ends(arch, "reduce") == (2, 3, 4)


def _sep(module, x, kernel):
    for unit in module.units:
        x = F.conv2d(torch.relu(x), unit.depthwise.weight, padding=kernel // 2, groups=x.shape[1])
        x = unit.bn(F.conv2d(x, unit.pointwise.weight))
    return x


def _reduction(module, x, relu):
    x = torch.relu(x) if relu else x
    halves = [F.conv2d(x[:, :, ::2, ::2], module.conv1.weight)]
    halves.append(F.conv2d(x[:, :, 1::2, 1::2], module.conv2.weight))  # shifted by one pixel
    return module.bn(torch.cat(halves, dim=1))


def _reference(child, x):
    """The hand-written network of `HAND` (nodes=4) with the child's own modules."""
    stem = child.stem_bn(F.conv2d(x, child.stem.weight, padding=1))
    assert stem.shape[1] == 3 * NETWORK["filters"]
    normal1, reduce, normal2 = child.cells
    assert [c.kind for c in child.cells] == ["normal", "reduce", "normal"]
    assert set(normal1.calibrate) == {"0", "1"} and set(reduce.calibrate) == {"0"}
    assert not normal2.calibrate

    def relu_conv_bn(m, h):
        return m.bn(F.conv2d(torch.relu(h), m.conv.weight))

    def normal(cell, n0, n1):
        n2 = _sep(cell.ops["node2_a_sep3x3_0"], n0, 3) + F.max_pool2d(n0, 3, 1, 1)
        n3 = n2 + _sep(cell.ops["node3_b_sep5x5_1"], n1, 5)
        assert set(cell.out) == {"3"}
        return cell.out_bn(F.conv2d(torch.relu(n3), cell.out["3"].weight))

    out1 = normal(
        normal1,
        relu_conv_bn(normal1.calibrate["0"], stem),
        relu_conv_bn(normal1.calibrate["1"], stem),
    )
    reduced = _reduction(reduce.reduce, out1, relu=False)  # the authors' search mode: no ReLU
    n0, n1 = _reduction(reduce.calibrate["0"], out1, relu=True), reduced
    n2 = F.avg_pool2d(n1, 3, 1, 1, count_include_pad=False) + _sep(
        reduce.ops["node2_b_sep3x3_1"], n1, 3
    )
    n3 = _sep(reduce.ops["node3_a_sep5x5_0"], n0, 5) + n0
    assert set(reduce.out) == {"2", "3"}
    weight = torch.cat([reduce.out["2"].weight, reduce.out["3"].weight], dim=1)  # concat + 1x1 conv
    out2 = reduce.out_bn(F.conv2d(torch.relu(torch.cat([n2, n3], dim=1)), weight))
    out3 = normal(normal2, reduced, out2)
    return child.classifier(torch.relu(out3).mean(dim=(2, 3)))


def test_child_wiring_matches_a_hand_written_network():
    space = EnasMicroSpace(nodes=4)
    torch.manual_seed(0)
    child = space.build_child(_arch(space, HAND), **NETWORK).double()
    with torch.no_grad():
        for m in child.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    x = _x(4)
    torch.testing.assert_close(child(x), _reference(child, x), **F64)


def test_child_equals_supernet_path_and_holds_exactly_its_paths():
    space = EnasMicroSpace(nodes=4)
    net = randomized_supernet(space, NETWORK)
    paths = net.parameter_paths()
    x = _x(6, seed=1)
    archs = [_arch(space, HAND)] + [space.sample(random.Random(s)) for s in range(2)]
    for arch in archs:
        masks = space.encode([arch])
        child = net.extract(arch, copy_weights=True).train()
        used = net.paths_used(arch)
        expected = {n for n, _ in net.named_parameters() if paths[n] in used}
        assert {n for n, _ in child.named_parameters()} == expected
        usage = net.path_usage(masks)
        assert {k for k, u in usage.items() if u.item() == 1} | {TRUNK} == used
        for mode in ("train", "eval"):  # the supernet's BN uses batch statistics in both
            getattr(net, mode)()
            torch.testing.assert_close(child(x), net(x, masks, None), **F64)
    net.train()
    # two architectures in one batch, one per ghost batch: each part is its own child's output
    both = net(x, space.encode(archs[:2]), 3)
    for i, arch in enumerate(archs[:2]):
        child = net.extract(arch, copy_weights=True).train()
        torch.testing.assert_close(both[3 * i : 3 * i + 3], child(x[3 * i : 3 * i + 3]), **F64)


def test_input_and_op_weights_get_the_finite_difference_gradient():
    space = EnasMicroSpace(nodes=4, ops=["sep3x3", "avgpool3x3", "identity"])
    net = randomized_supernet(space, NETWORK)
    x, gen = _x(4, seed=2), torch.Generator().manual_seed(3)
    weights = {
        d.name: (0.2 + 0.8 * torch.rand(1, d.fan_in, generator=gen, dtype=torch.float64))
        for d in space.decisions
    }
    for w in weights.values():
        w.requires_grad_(True)

    def loss(ws):
        return net(x, ws, None).square().mean()

    loss(weights).backward()
    eps = 1e-6
    # an input weight (it scales node 3's pairs and node 0's loose-end weight) and an op weight
    for name, j in (("normal/node3/in_a", 0), ("reduce/node2/op_b", 1), ("normal/node2/in_b", 1)):
        with torch.no_grad():
            plus = {k: v.detach().clone() for k, v in weights.items()}
            minus = {k: v.detach().clone() for k, v in weights.items()}
            plus[name][0, j] += eps
            minus[name][0, j] -= eps
            numeric = (loss(plus) - loss(minus)) / (2 * eps)
        analytic = weights[name].grad[0, j]
        assert analytic.abs() > 1e-8
        torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-9)
