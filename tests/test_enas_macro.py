"""The ENAS macro space: counting, pointer decisions, supernet and children, skip-weight gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nas.errors import NasError
from nas.ops import FactorizedReduction
from nas.spaces import build_space
from nas.spaces.enas_macro import MACRO_OPS, EnasMacroSpace, pool_layers
from tests.conftest import randomized_supernet

ROOT = Path(__file__).resolve().parents[1]
F64 = {"rtol": 1e-8, "atol": 1e-10}
NET = {"filters": 4, "cells": 4, "stages": 3, "num_classes": 5}  # reductions after layers 0 and 1


def _x(n=6, seed=0):
    return torch.randn(
        n, 3, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def _arch(space, ops, skips):
    """ops: one op per layer; skips: {layer i: [earlier layers j]} (the rest skip nothing)."""
    choices = {f"layer{i}/op": [op] for i, op in enumerate(ops)}
    choices.update(
        {f"layer{i}/skip": [f"layer{j}" for j in skips.get(i, [])] for i in range(1, len(ops))}
    )
    return space.architecture(choices)


# layer 2 skips to layer 0 (reduced twice), layer 3 to layers 0 and 1 (both reduced)
CROSSING = (["sep5x5", "conv3x3", "maxpool3x3", "avgpool3x3"], {2: [0], 3: [0, 1]})
NO_SKIP = (["conv5x5", "sep3x3", "avgpool3x3", "conv3x3"], {})


def _batch_statistics(child):
    """Child BNs without running statistics: batch statistics in eval mode too, as the supernet's."""
    for m in child.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    return child


def test_count_enumerate_spec_and_config():
    space = EnasMacroSpace()
    assert space.count() == 6**12 * 2**66
    assert f"{float(space.count()):.3e}" == "1.606e+29"  # the paper's 1.6 x 10^29
    small = EnasMacroSpace(layers=2)
    assert small.count() == 6 * 6 * 2 == 72
    assert len(set(small.enumerate())) == 72
    again = build_space(space.spec())
    assert isinstance(again, EnasMacroSpace) and again.fingerprint == space.fingerprint
    assert space.spec() == {"name": "enas_macro", "layers": 12, "ops": list(MACRO_OPS)}
    from_yaml = instantiate(OmegaConf.load(ROOT / "conf/search_space/enas_macro.yaml"))
    assert from_yaml.fingerprint == space.fingerprint
    assert pool_layers(12, 3) == [3, 7]  # the ENAS code's pool_layers for 12 layers


def test_decisions_and_nodes():
    space = EnasMacroSpace(layers=4)
    assert [d.name for d in space.decisions] == [
        "layer0/op",
        "layer1/op",
        "layer1/skip",
        "layer2/op",
        "layer2/skip",
        "layer3/op",
        "layer3/skip",
    ]
    for d in space.decisions:
        if d.name.endswith("/op"):
            assert d.options == MACRO_OPS and d.min_k == d.max_k == 1 and not d.pointer
        else:
            i = int(d.name.removeprefix("layer").removesuffix("/skip"))
            assert d.options == tuple(f"layer{j}" for j in range(i))
            assert d.pointer and d.min_k == 0 and d.max_k == i
    nodes = space.nodes()
    assert [n.name for n in nodes] == [f"layer{i}" for i in range(4)]
    order = {d.name: k for k, d in enumerate(space.decisions)}
    # a node exists before decision k if it comes before its decision, or at/after an earlier one
    born = {n.name: order[n.at] - (n.when == "before") for n in nodes}
    assert [born[n.name] for n in nodes] == sorted(born[n.name] for n in nodes)  # nodes in order
    for d in space.decisions:
        if d.pointer:
            assert all(born[o] < order[d.name] for o in d.options), d.name
    pointers = [d for d in space.decisions if d.pointer]
    assert len(pointers) == 3


def test_bad_arguments_stop_with_clear_messages():
    with pytest.raises(NasError, match=r"search_space.layers=0 must be an integer >= 1"):
        EnasMacroSpace(layers=0)
    with pytest.raises(NasError, match=r"unknown op\(s\) \['conv7x7'\]"):
        EnasMacroSpace(ops=["conv3x3", "conv7x7"])
    space = EnasMacroSpace(layers=3)
    with pytest.raises(NasError, match=r"model.cells=2 must equal search_space.layers=3"):
        space.build_supernet(filters=4, cells=2, stages=1)
    arch = space.sample(__import__("random").Random(0))
    with pytest.raises(NasError, match=r"set model.cells: \$\{search_space.layers\}"):
        space.build_child(arch, filters=4, cells=12, stages=3)
    with pytest.raises(NasError, match=r"model.stages=4 must be <= model.cells=3"):
        space.build_supernet(filters=4, cells=3, stages=4)


@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("case", [CROSSING, NO_SKIP], ids=["crossing", "no_skip"])
def test_child_equals_the_supernet_path(case, stages):
    space = EnasMacroSpace(layers=4)
    net = randomized_supernet(space, {**NET, "stages": stages, "dropout": 0.5})
    arch = _arch(space, *case)
    child = net.extract(arch, copy_weights=True)
    assert child.config == net.config and child.dropout == 0.5
    x, masks = _x(), space.encode([arch])
    # eval mode: no dropout; the child's BNs on batch statistics, as the supernet's always are
    net.eval()
    _batch_statistics(child).eval()
    ref = net(x, masks, None)
    torch.testing.assert_close(child(x), ref, **F64)
    torch.testing.assert_close(net(x, masks, None, dense=True), ref, **F64)
    # train mode: the same dropout mask with the same seed
    net.train(), child.train()
    torch.manual_seed(1)
    out = child(x)
    torch.manual_seed(1)
    torch.testing.assert_close(out, net(x, masks, None), **F64)
    assert not torch.allclose(out, ref)  # dropout did act


def test_child_holds_exactly_the_paths_it_uses():
    space = EnasMacroSpace(layers=4)
    net = randomized_supernet(space, NET)
    paths, own = net.parameter_paths(), dict(net.named_parameters())
    expected_reductions = [
        (CROSSING, {("reduce", 0, 0), ("reduce", 1, 0), ("reduce", 1, 1)}),
        (NO_SKIP, {("reduce", 0, 0), ("reduce", 1, 1)}),  # each next layer's input only
    ]
    for case, reductions in expected_reductions:
        arch = _arch(space, *case)
        used = net.paths_used(arch)
        assert {k for k in used if k and k[0] == "reduce"} == reductions
        ops = {(f"layer{i}/op", op) for i, op in enumerate(case[0])}
        assert used == {()} | ops | reductions
        child = net.extract(arch)
        names = {n for n, _ in child.named_parameters()}
        assert names <= set(own)
        assert names == {n for n in own if paths[n] in used}
        assert ("reduce.after1.layer0.conv_a.weight" in names) == (("reduce", 1, 0) in used)
        usage = net.path_usage(space.encode([arch]))
        assert {k for k, u in usage.items() if u.item()} == used - {()}
        # the supernet computes no reduction (nor op) the architecture does not use
        ran: set = set()
        hooks = [
            module.register_forward_hook(lambda *_, key=key, ran=ran: ran.add(key))
            for key, module in net._declared
        ]
        net.zero_grad()
        net(_x(4), space.encode([arch]), None).sum().backward()
        for hook in hooks:
            hook.remove()
        assert ran == used - {()}
        touched = {paths[n] for n, p in net.named_parameters() if p.grad is not None}
        assert touched == used


def test_factorized_reduction_reads_even_and_odd_pixels():
    torch.manual_seed(0)
    reduce = FactorizedReduction(5, ghost=False).double()  # odd: 2 + 3 channels
    x = _x(4)[:, :, :, :].repeat(1, 2, 1, 1)[:, :5]
    out = reduce(x)
    assert out.shape == (4, 5, 4, 4)
    a = torch.nn.functional.conv2d(x[:, :, ::2, ::2], reduce.conv_a.weight)
    b = torch.nn.functional.conv2d(x[:, :, 1::2, 1::2], reduce.conv_b.weight)  # shifted by one
    torch.testing.assert_close(out, reduce.bn(torch.cat([a, b], 1)), **F64)


def test_real_valued_skip_weights_get_the_finite_difference_gradient():
    space = EnasMacroSpace(layers=4)
    net = randomized_supernet(space, NET)
    arch = _arch(space, *NO_SKIP)
    gen = torch.Generator().manual_seed(2)
    weights = {k: v.double() for k, v in space.encode([arch, arch]).items()}  # 2 ghost batches
    for i in (2, 3):  # layer 3 reads layers 0 and 1 after their reductions; layer 2 layer 0
        weights[f"layer{i}/skip"] = (
            0.2 + 0.8 * torch.rand(2, i, generator=gen, dtype=torch.float64)
        ).requires_grad_(True)
    x = _x(8, seed=3)

    def loss(ws):
        return net(x, ws, 4).square().mean()

    loss(weights).backward()
    eps = 1e-7
    for i in (2, 3):
        grad = weights[f"layer{i}/skip"].grad
        assert grad is not None and bool((grad != 0).all())
        for g in range(2):
            for j in range(i):
                with torch.no_grad():
                    plus = {k: v.detach().clone() for k, v in weights.items()}
                    minus = {k: v.detach().clone() for k, v in weights.items()}
                    plus[f"layer{i}/skip"][g, j] += eps
                    minus[f"layer{i}/skip"][g, j] -= eps
                    numeric = (loss(plus) - loss(minus)) / (2 * eps)
                torch.testing.assert_close(grad[g, j], numeric, rtol=1e-5, atol=1e-9)
