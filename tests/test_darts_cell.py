"""The darts_cell space and networks: counts, edge checks, presets, simplify, wiring, child = supernet."""

from __future__ import annotations

import random

import pytest
import torch
from omegaconf import OmegaConf

from nas.errors import NasError
from nas.spaces import build_space
from nas.spaces.darts_cell import (
    BAYESNAS_EDGES,
    BAYESNAS_OPS,
    DARTS_EDGES,
    DartsCellSpace,
    dense_edges,
)
from nas.spaces.interface import TRUNK
from nas.spaces.nb201 import NB201Space
from tests.conftest import ROOT, randomized_supernet

NETWORK = {"filters": 4, "cells": 2, "stages": 2, "num_classes": 5, "in_channels": 3}
F64 = {"rtol": 1e-8, "atol": 1e-10}


def _x(n, seed=0):
    return torch.randn(
        n, 3, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def _arch(space, normal: dict, reduce: dict):
    """An architecture from {edge: ops} per cell type; unlisted edges are absent."""
    choices = {d.name: () for d in space.decisions}
    for cell, edges in (("normal", normal), ("reduce", reduce)):
        for edge, ops in edges.items():
            choices[f"{cell}/{edge}"] = ops
    return space.architecture(choices)


def _by_node(edges):
    """{target node: set of sources} of a list of edges "j<-i"."""
    out: dict[int, set[str]] = {}
    for edge in edges:
        target, source = edge.split("<-")
        out.setdefault(int(target), set()).add(source)
    return out


# -- space ----------------------------------------------------------------------------------------
def test_counts_decisions_and_spec():
    darts = DartsCellSpace()
    assert len(DARTS_EDGES) == 14 and darts.edges["normal"] == darts.edges["reduce"] == DARTS_EDGES
    assert [d.name for d in darts.decisions[:3]] == [
        "normal/0<-in0",
        "normal/0<-in1",
        "normal/1<-in0",
    ]
    assert len(darts.decisions) == 28
    assert all(d.options == BAYESNAS_OPS and (d.min_k, d.max_k) == (0, 7) for d in darts.decisions)
    assert darts.count() == 2 ** (7 * 28)
    released = DartsCellSpace.bayesnas()
    assert len(released.decisions) == 16 and released.count() == 2 ** (7 * 16)
    assert DartsCellSpace(ops=["sep3x3", "identity"], nodes=2).count() == 2 ** (2 * 2 * 5)
    assert dense_edges(2) == ("0<-in0", "0<-in1", "1<-in0", "1<-in1", "1<-0")
    for space in (darts, released, DartsCellSpace.darts(nodes=3)):
        again = build_space(space.spec())
        assert isinstance(again, DartsCellSpace) and again.fingerprint == space.fingerprint
        assert all(isinstance(v, list) for k, v in space.spec().items() if "edges" in k)
    # the order edges are given in does not matter: canonical (by target, then in0, in1, 0, 1, ...)
    shuffled = DartsCellSpace(edges=list(reversed(DARTS_EDGES)))
    assert shuffled.fingerprint == darts.fingerprint


def test_presets_are_the_released_bayesnas_cells_and_the_yaml_files():
    normal, reduce = _by_node(BAYESNAS_EDGES["normal"]), _by_node(BAYESNAS_EDGES["reduce"])
    # ALGORITHMS.md 3.2 (node 3 of the normal cell reads in0, as the code runs)
    assert normal == {0: {"in0", "in1"}, 1: {"in0", "in1"}, 2: {"in0", "in1"}, 3: {"in0", "0"}}
    assert reduce == {0: {"in0", "in1"}, 1: {"in1", "0"}, 2: {"in1", "0"}, 3: {"in1", "0"}}
    released = DartsCellSpace.bayesnas()
    assert _by_node(released.edges["normal"]) == normal
    assert _by_node(released.edges["reduce"]) == reduce
    from hydra.utils import instantiate

    # darts_cell builds DARTS's search network, bayesnas_cell the BayesNAS one
    assert (DartsCellSpace.darts().network, released.network) == ("darts", "bayesnas")
    for name, expected in (("darts_cell", DartsCellSpace.darts()), ("bayesnas_cell", released)):
        space = instantiate(OmegaConf.load(ROOT / f"conf/search_space/{name}.yaml"))
        assert space.fingerprint == expected.fingerprint and space.spec() == expected.spec()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"edges": ["0<-in0", "1<-0", "4<-in0"]}, "edge '4<-in0'; expected 'j<-i'"),
        ({"edges": ["0<-in0", "1<-in2"]}, "edge '1<-in2'; expected 'j<-i'"),
        ({"edges": ["0<-in0", "1->0"]}, "edge '1->0'; expected 'j<-i'"),
        ({"edges": ["0<-in0", "1<-1"]}, "edge '1<-1' from node 1 into node 1"),
        ({"edges": ["0<-in0", "0<-2", "1<-in0", "2<-in1"]}, "edge '0<-2' from node 2 into node 0"),
        ({"edges": ["0<-in0", "0<-in0", "1<-0"], "nodes": 2}, "lists edge(s) ['0<-in0'] more"),
        ({"edges": ["0<-in0", "1<-0", "3<-in0"]}, "leaves node(s) [2] without an incoming edge"),
        ({"reduce_edges": ["0<-in0"]}, "reduce_edges=['0<-in0'] leaves node(s) [1, 2, 3]"),
        ({"edges": "0<-in0"}, "must be a list of edges"),
        ({"ops": ["sep3x3", "none"]}, "unknown op(s) ['none']"),
        ({"nodes": 0}, "search_space.nodes=0 must be an integer >= 1"),
    ],
)
def test_bad_edges_ops_and_nodes_are_refused_clearly(kwargs, message):
    with pytest.raises(NasError) as err:
        DartsCellSpace(**kwargs)
    assert message in str(err.value)


# -- simplify -------------------------------------------------------------------------------------
def test_simplify_removes_edges_out_of_dead_nodes_until_none_is_left():
    space = DartsCellSpace()
    # normal: node 0 has no input; node 1 reads only node 0; node 3 reads only nodes 0 and 1;
    # node 2 reads in1 and node 1. reduce: nothing dead.
    normal = {
        "1<-0": ["sep3x3", "identity"],
        "2<-in1": ["dil3x3"],
        "2<-1": ["maxpool3x3"],
        "3<-0": ["avgpool3x3"],
        "3<-1": ["sep5x5"],
    }
    reduce = {"0<-in0": ["identity"], "1<-0": ["sep3x3"], "2<-in1": ["dil5x5"], "3<-2": ["sep3x3"]}
    arch = _arch(space, normal, reduce)
    simple = space.simplify(arch)
    assert simple == _arch(space, {"2<-in1": ["dil3x3"]}, reduce)
    assert space.simplify(simple) is simple  # nothing dead left: the same architecture back
    assert space.simplify(space.all_on()) == space.all_on()
    # the released cells: normal node 3 reads in0 and node 0 -> dead once both are gone
    released = DartsCellSpace.bayesnas()
    arch = _arch(
        released,
        {"1<-in0": ["sep3x3"], "2<-in1": ["identity"], "3<-0": ["sep3x3"]},
        {"0<-in0": ["identity"], "1<-0": ["sep3x3"], "2<-0": ["dil3x3"], "3<-in1": ["identity"]},
    )
    assert released.simplify(arch) == _arch(
        released,
        {"1<-in0": ["sep3x3"], "2<-in1": ["identity"]},
        {"0<-in0": ["identity"], "1<-0": ["sep3x3"], "2<-0": ["dil3x3"], "3<-in1": ["identity"]},
    )
    nb201 = NB201Space()
    other = nb201.sample(random.Random(0))
    assert nb201.simplify(other) is other  # the default: identity


def test_simplify_is_the_identity_on_architectures_without_dead_nodes():
    space = DartsCellSpace.bayesnas()
    rng = random.Random(1)
    for _ in range(20):
        arch = space.sample(rng)
        for cell in ("normal", "reduce"):  # feed every node from an input
            for edge in space.edges[cell]:
                if "<-in" in edge and not arch[f"{cell}/{edge}"]:
                    arch = _arch_with(arch, f"{cell}/{edge}", ("identity",))
        assert space.simplify(arch) is arch


def _arch_with(arch, decision, ops):
    return arch.space.architecture({**arch.choices, decision: ops})


# -- networks -------------------------------------------------------------------------------------
# normal: node 0 = sep3x3(in0) + identity(in0), node 1 = dil5x5(in1) + maxpool(node 0), node 2
# dead (zeros: its edges have no op), node 3 = avgpool + sep3x3(node 2) + dil3x3(node 1) + sep5x5(in1)
# reduce: node 0 = identity(in1), node 1 = sep3x3(node 0) + avgpool(in0), node 2 = dil3x3(in0),
# node 3 = sep5x5(node 2) + identity(node 1)
HAND = (
    {
        "0<-in0": ["sep3x3", "identity"],
        "1<-in1": ["dil5x5"],
        "1<-0": ["maxpool3x3"],
        "3<-2": ["avgpool3x3", "sep3x3"],
        "3<-1": ["dil3x3"],
        "3<-in1": ["sep5x5"],
    },
    {
        "0<-in1": ["identity"],
        "1<-0": ["sep3x3"],
        "1<-in0": ["avgpool3x3"],
        "2<-in0": ["dil3x3"],
        "3<-2": ["sep5x5"],
        "3<-1": ["identity"],
    },
)


def test_network_wiring_by_hand():
    """in0 is h-1 and in1 h-2; nodes sum their edges' ops; the output concatenates the nodes."""
    space = DartsCellSpace()
    arch = _arch(space, *HAND)
    child = randomized_supernet(space, NETWORK).extract(arch, copy_weights=True).train()
    seen = {}
    for k, cell in enumerate(child.cells):
        cell.register_forward_hook(lambda m, args, out, k=k: seen.__setitem__(k, (args, out)))
        for i, p in enumerate(cell.preprocess):
            p.register_forward_hook(lambda m, a, out, k=k, i=i: seen.__setitem__((k, i), out))
    x = _x(4)
    child(x)
    assert [c.kind for c in child.cells] == ["normal", "reduce", "normal"]
    assert [tuple(seen[k][1].shape) for k in range(3)] == [
        (4, 16, 8, 8),
        (4, 32, 4, 4),
        (4, 32, 4, 4),
    ]
    assert torch.equal(seen[1][0][0], seen[0][1]) and torch.equal(seen[2][0][0], seen[1][1])
    assert torch.equal(seen[2][0][1], seen[0][1])  # h-2 of the last cell: the first cell
    assert "cells.0.edges.2<-in0" not in dict(child.named_modules())  # absent edges: no module
    with torch.no_grad():
        for k, (cell_ops, c) in ((0, (HAND[0], 4)), (1, (HAND[1], 8))):
            cell = child.cells[k]
            s = {"in0": seen[k, 0], "in1": seen[k, 1]}
            for j in range(4):
                terms = [
                    cell.edges[e][op](s[e.split("<-")[1]])
                    for e, ops in cell_ops.items()
                    if e.startswith(f"{j}<-")
                    for op in ops
                ]
                s[str(j)] = sum(terms) if terms else torch.zeros_like(s["in0"])
            assert s["in0"].shape[1] == c
            expected = torch.cat([s[str(j)] for j in range(4)], dim=1)
            torch.testing.assert_close(seen[k][1], expected, **F64)
    assert not seen[0][1][:, 8:12].any()  # node 2 of the normal cell: zeros


def test_child_equals_supernet_path_and_holds_exactly_its_paths():
    space = DartsCellSpace()
    net = randomized_supernet(space, NETWORK)
    paths = net.parameter_paths()
    assert set(net.path_keys()) == {
        (d.name, op) for d in space.decisions for op in ("sep3x3", "sep5x5", "dil3x3", "dil5x5")
    }
    hand = _arch(space, *HAND)
    assert space.simplify(hand) != hand  # node 2 of the normal cell is dead, its edge 3<-2 on
    archs = [hand, space.simplify(hand), space.sample(random.Random(3))]
    x = _x(6, seed=1)
    for arch in archs:
        masks = space.encode([arch])
        child = net.extract(arch, copy_weights=True).train()
        used = net.paths_used(arch)
        expected = {n for n, _ in net.named_parameters() if paths[n] in used}
        assert {n for n, _ in child.named_parameters()} == expected
        assert any(paths[n] == TRUNK for n in expected)
        for mode in ("train", "eval"):  # the supernet's BN uses batch statistics in both
            getattr(net, mode)()
            torch.testing.assert_close(child(x), net(x, masks, None), **F64)
    net.train()
    # two architectures in one batch, one per ghost batch: each part is its own child's output
    both = net(x, space.encode(archs[::2]), 3)
    for i, arch in enumerate(archs[::2]):
        child = net.extract(arch, copy_weights=True).train()
        torch.testing.assert_close(both[3 * i : 3 * i + 3], child(x[3 * i : 3 * i + 3]), **F64)


def test_real_valued_op_weights_get_the_finite_difference_gradient():
    space = DartsCellSpace.bayesnas()
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
    ops = {op: j for j, op in enumerate(BAYESNAS_OPS)}
    for name, op in (
        ("normal/3<-0", "dil5x5"),
        ("reduce/2<-0", "sep3x3"),
        ("normal/0<-in1", "identity"),
        ("reduce/1<-in1", "avgpool3x3"),
    ):
        j = ops[op]
        with torch.no_grad():
            plus = {k: v.detach().clone() for k, v in weights.items()}
            minus = {k: v.detach().clone() for k, v in weights.items()}
            plus[name][0, j] += eps
            minus[name][0, j] -= eps
            numeric = (loss(plus) - loss(minus)) / (2 * eps)
        analytic = weights[name].grad[0, j]
        assert analytic.abs() > 1e-8
        torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-9)
