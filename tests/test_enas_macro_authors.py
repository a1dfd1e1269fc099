"""The ENAS macro space in the authors' wiring (`general_child.py`): skips reach the stem and layers
0..i-2, op ids in their order; their published arcs read in, build and run, and every decision
lands on the layer the authors' code gives it (hand-computed forward passes)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nas.errors import NasError
from nas.methods.enas.controller import Controller
from nas.spaces import build_space
from nas.spaces.enas_macro import (
    AUTHORS_MACRO_OPS,
    MACRO_OPS,
    EnasMacroSpace,
    format_arc,
    parse_arc,
)
from nas.spaces.enas_macro.final import EnasMacroFinalNetwork
from tests import test_space_interface as generic
from tests.conftest import randomized_supernet

ROOT = Path(__file__).resolve().parents[1]
F64 = {"rtol": 1e-8, "atol": 1e-10}

# --child_fixed_arc of melodyguan/enas scripts/cifar10_macro_final.sh, one layer per line
AUTHORS_FINAL_ARC = """0
3 0
0 1 0
2 0 0 1
2 0 0 0 0
3 1 1 0 1 0
2 0 0 0 0 0 1
2 0 1 1 0 1 1 1
1 0 1 1 1 0 1 0 1
0 0 0 0 0 0 0 0 0 0
2 0 0 0 0 0 1 0 0 0 0
0 1 0 0 1 1 0 0 0 0 1 1
2 0 1 0 0 0 0 0 1 0 1 1 0
1 0 0 1 0 0 0 1 1 1 0 1 0 1
0 1 1 0 1 0 1 0 0 0 0 0 1 0 0
2 0 0 1 0 0 0 0 0 0 0 1 0 1 0 1
2 0 1 0 0 0 1 0 0 1 1 1 1 0 0 1 0
2 0 0 0 0 1 0 1 0 1 0 0 1 0 1 0 0 1
3 0 1 1 0 1 0 0 0 0 0 1 0 1 0 1 0 0 0
3 0 1 1 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1
0 1 0 0 1 0 1 1 0 0 0 1 0 0 0 0 0 1 1 0 0
3 0 1 0 1 1 0 0 1 0 1 1 0 1 1 0 1 0 0 1 0 0
0 1 0 1 0 1 0 0 0 0 0 0 0 0 1 0 1 0 0 1 0 0 0
0 1 1 0 0 0 1 1 1 0 1 0 0 0 1 0 1 0 0 1 1 0 0 0"""


def _authors(layers: int) -> EnasMacroSpace:
    return EnasMacroSpace(layers=layers, ops=AUTHORS_MACRO_OPS, wiring="authors")


@pytest.fixture
def space():
    """The generic interface checks of every space (tests/test_space_interface.py), on this wiring."""
    return _authors(2)


@pytest.mark.slow
def test_gathered_equals_dense_forward_and_gradients(space):
    generic.test_gathered_equals_dense_forward_and_gradients(space)


@pytest.mark.slow
def test_every_weight_belongs_to_one_declared_path_or_the_trunk(space):
    generic.test_every_weight_belongs_to_one_declared_path_or_the_trunk(space)


def test_masked_l2_counts_each_used_path_once_per_architecture(space):
    generic.test_masked_l2_counts_each_used_path_once_per_architecture(space)


def test_skips_reach_the_stem_and_the_layers_before_the_input():
    space = _authors(4)
    assert space.skip_options(1) == ("stem",)
    assert space.skip_options(3) == ("stem", "layer0", "layer1")
    assert space.decision("layer3/skip").options == ("stem", "layer0", "layer1")
    assert space.count() == EnasMacroSpace(layers=4).count() == 6**4 * 2**6
    # the authors' controller anchors skip bit j at its layer-j step: the stem after layer 0's op,
    # layer j with layer j+1's skips
    assert [(n.name, n.at, n.when) for n in space.nodes()] == [
        ("stem", "layer0/op", "after"),
        ("layer0", "layer1/skip", "at"),
        ("layer1", "layer2/skip", "at"),
        ("layer2", "layer3/skip", "at"),
    ]
    assert space.spec() == {
        "name": "enas_macro",
        "layers": 4,
        "ops": list(AUTHORS_MACRO_OPS),
        "wiring": "authors",
    }
    assert build_space(space.spec()).fingerprint == space.fingerprint
    # a spec written before the wiring existed is the original wiring, unchanged
    old = build_space({"name": "enas_macro", "layers": 4, "ops": list(MACRO_OPS)})
    assert old.wiring == "layers" and old.decision("layer3/skip").options == (
        "layer0",
        "layer1",
        "layer2",
    )
    assert "wiring" not in old.spec() and old.fingerprint != space.fingerprint
    yaml = instantiate(OmegaConf.load(ROOT / "conf/search_space/enas_macro_authors.yaml"))
    assert yaml.fingerprint == _authors(12).fingerprint


def test_the_authors_final_arc_reads_into_their_wiring():
    space = _authors(24)
    arch = parse_arc(space, AUTHORS_FINAL_ARC)
    lines = AUTHORS_FINAL_ARC.splitlines()
    assert format_arc(arch) == " ".join(lines)
    assert arch["layer0/op"] == ("conv3x3",) and "layer0/skip" not in arch.choices
    assert arch["layer1/op"] == ("sep5x5",) and arch["layer1/skip"] == ()
    assert arch["layer2/skip"] == ("stem",)  # "0 1 0": conv3x3, bit 0 (the stem) on
    assert arch["layer3/op"] == ("conv5x5",) and arch["layer3/skip"] == ("layer1",)
    assert arch["layer5/skip"] == ("stem", "layer0", "layer2")  # "3 1 1 0 1 0"
    assert arch["layer8/op"] == ("sep3x3",)
    # the last line, read by hand: bits 0, 1, 5, 6, 7, 9, 13, 15, 18, 19 are on
    assert arch["layer23/skip"] == tuple(
        ["stem"] + [f"layer{j}" for j in (0, 4, 5, 6, 8, 12, 14, 17, 18)]
    )
    assert {arch[f"layer{i}/op"][0] for i in range(24)} <= set(AUTHORS_MACRO_OPS[:4])
    # the shipped experiment retrains exactly this arc
    config = OmegaConf.load(ROOT / "conf/experiment/cifar_enas_macro_final.yaml")
    assert config.arch.split() == " ".join(lines).split()
    with torch.device("meta"):  # the authors' widths, without allocating 42 M weights
        net = EnasMacroFinalNetwork(arch, filters=96, cells=24)
    assert net.pool_layers == [7, 15]
    assert net.layers[23].combine.conv.in_channels == 11 * 384  # 10 skips and the op


@pytest.mark.slow
def test_the_authors_final_arc_runs():
    arch = parse_arc(_authors(24), AUTHORS_FINAL_ARC)
    net = EnasMacroFinalNetwork(arch, filters=2, cells=24)
    out = net.train()(torch.randn(2, 3, 8, 8))
    out.sum().backward()
    assert out.shape == (2, 10) and all(p.grad is not None for p in net.parameters())


def test_arcs_in_another_numbering_or_of_another_length_are_refused():
    with pytest.raises(
        NasError, match=r"needs their wiring and op order .*search_space=enas_macro_authors"
    ):
        parse_arc(EnasMacroSpace(layers=2), "0 1 0")
    with pytest.raises(NasError, match=r"arc has 4 numbers; 2 layers take 3"):
        parse_arc(_authors(2), "0 1 0 1")
    with pytest.raises(NasError, match=r"layer 1's op id 6 is not one of 0..5"):
        parse_arc(_authors(2), "0 6 1")
    with pytest.raises(NasError, match=r"skip bits \[2\] must each be 0 or 1"):
        parse_arc(_authors(2), "0 1 2")
    with pytest.raises(NasError, match=r"must be integers separated by spaces"):
        parse_arc(_authors(2), "0 one 1")
    with pytest.raises(NasError, match=r"search_space.wiring='dense' is unknown"):
        EnasMacroSpace(wiring="dense")


# layer 0: sep3x3; layer 1: conv3x3 + stem; layer 2: conv5x5 + stem + layer 0; layer 3: sep5x5 +
# layer 1. With 2 stages, every stored output is reduced after layer 1 (each is read later).
SMALL_ARC = "1  0 1  2 1 1  3 0 0 1"


def test_search_network_wiring_by_hand():
    space = _authors(4)
    arch = parse_arc(space, SMALL_ARC)
    assert arch["layer2/skip"] == ("stem", "layer0") and arch["layer3/skip"] == ("layer1",)
    net = randomized_supernet(space, {"filters": 4, "cells": 4, "stages": 2, "num_classes": 5})
    child = net.extract(arch, copy_weights=True).eval()
    for m in child.modules():  # batch statistics, as the supernet's
        if isinstance(m, torch.nn.BatchNorm2d):
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    layer, reduce = child.layers, child.reduce["after1"]
    assert layer[0].bn is None  # the authors' layer 0: no BN of its own
    s = child.stem_bn(child.stem(x))
    h0 = layer[0].ops["sep3x3"](s)
    h1 = layer[1].bn(layer[1].ops["conv3x3"](h0) + s)
    s, h0, h1 = reduce["stem"](s), reduce["layer0"](h0), reduce["layer1"](h1)
    h2 = layer[2].bn(layer[2].ops["conv5x5"](h1) + s + h0)
    h3 = layer[3].bn(layer[3].ops["sep5x5"](h2) + h1)
    expected = child.classifier(h3.mean(dim=(2, 3)))
    torch.testing.assert_close(child(x), expected, **F64)
    torch.testing.assert_close(net.eval()(x, space.encode([arch])), expected, **F64)
    assert {k for k in net.paths_used(arch) if k and k[0] == "reduce"} == {
        ("reduce", 1, "stem"),
        ("reduce", 1, 0),
        ("reduce", 1, 1),
    }


def test_final_network_wiring_by_hand():
    arch = parse_arc(_authors(4), SMALL_ARC)
    torch.manual_seed(0)
    net = EnasMacroFinalNetwork(arch, filters=4, cells=4, stages=2, num_classes=5).double().eval()
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    layer, reduce = net.layers, net.reduce["after1"]
    assert layer[0].combine is None
    assert [m.combine.conv.in_channels for m in layer[1:]] == [2 * 4, 3 * 8, 2 * 8]
    s = net.stem(x)
    h0 = layer[0].op(s)
    h1 = layer[1].combine(torch.cat([s, layer[1].op(h0)], 1))
    s, h0, h1 = reduce["stem"](s), reduce["layer0"](h0), reduce["layer1"](h1)  # 8 channels
    h2 = layer[2].combine(torch.cat([s, h0, layer[2].op(h1)], 1))
    h3 = layer[3].combine(torch.cat([h1, layer[3].op(h2)], 1))
    torch.testing.assert_close(net(x), net.classifier(h3.mean(dim=(2, 3))), **F64)
    # the code's conv for a sep id, and the separable unit on request
    assert isinstance(layer[0].op.out.conv, torch.nn.Conv2d) and layer[0].op.out.conv.groups == 1
    separable = EnasMacroFinalNetwork(arch, filters=4, cells=4, stages=2, sep_as_conv=False)
    assert separable.layers[0].op.out.depthwise.groups == 4


def test_the_controller_draws_the_same_bits_under_both_wirings():
    """Skip bit j is attended with the anchor of layer j's step in both wirings (as in the authors'
    controller); the wirings differ only in which output a bit names."""
    authors, layers = _authors(5), EnasMacroSpace(layers=5, ops=AUTHORS_MACRO_OPS)
    draws = []
    for space in (authors, layers):
        controller = Controller(space, seed=3)
        draws.append(controller.sample(16, torch.Generator().manual_seed(4)))
    for a, b in zip(*draws, strict=True):
        assert format_arc(a) == _bits(b)
    assert any(a["layer4/skip"] for a in draws[0])  # the draw is not all-off


def _bits(arch) -> str:
    """An architecture of the original wiring as op ids and skip bits by position."""
    space, ids = arch.space, []
    for i in range(space.layers):
        ids.append(space.ops.index(arch[f"layer{i}/op"][0]))
        if i:
            ids += [int(o in arch[f"layer{i}/skip"]) for o in space.skip_options(i)]
    return " ".join(map(str, ids))


@pytest.mark.slow
def test_random_architectures_run_in_the_final_network():
    space = _authors(6)
    for arch in (space.sample(random.Random(seed)) for seed in range(3)):
        net = EnasMacroFinalNetwork(arch, filters=4, cells=6, stages=3)
        assert parse_arc(space, format_arc(arch)) == arch
        assert net.train()(torch.randn(4, 3, 8, 8)).shape == (4, 10)
