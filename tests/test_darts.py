"""DARTS and GDAS: the second-order gradient, Gumbel straight-through sampling, derivation, runs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from nas.methods.darts.module import DARTSModule
from nas.methods.gdas.module import gumbel_straight_through
from nas.spaces import Architecture
from nas.spaces.darts_cell import DartsCellSpace
from nas.spaces.nb201 import NB201Space
from tests.conftest import compose_config
from tests.test_resume import _train_in_process

NETWORK = {"filters": 2, "cells": 1, "stages": 1, "num_classes": 3, "in_channels": 1}


def _batch(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 4, 4, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def test_second_order_gradient_equals_autograd_of_the_unrolled_objective():
    space = NB201Space(ops=["none", "skip_connect", "nor_conv_1x1", "avg_pool_3x3"])
    torch.manual_seed(0)
    # a small finite-difference step: the estimate then equals the exact gradient to ~1e-6
    module = DARTSModule(space, order=2, unrolled_eps=1e-5, ghost_size=6, **NETWORK).double()
    with torch.no_grad():
        for a in module.alpha:
            a.normal_()  # far from uniform, so a wrong Hessian term would show
    (x, y), (xv, yv) = _batch(0), _batch(1)
    xi, decay = 0.3, 0.01
    momentum = {id(p): 0.1 * torch.randn_like(p) for p in module.supernet.parameters()}
    estimate = module.unrolled_gradients(x, y, xv, yv, (xi, decay, momentum))

    names = [n for n, _ in module.supernet.named_parameters()]
    params = [p for _, p in module.supernet.named_parameters()]

    def loss_at(values, xb, yb):
        weights = module._softmax_weights()
        out = functional_call(
            module.supernet, dict(zip(names, values, strict=True)), (xb, weights, 6)
        )
        return F.cross_entropy(out, yb)

    grads = torch.autograd.grad(loss_at(params, x, y), params, create_graph=True)
    unrolled = [
        p - xi * (momentum[id(p)] + g + (decay * p if p.dim() > 1 else 0))
        for p, g in zip(params, grads, strict=True)
    ]
    exact = torch.autograd.grad(loss_at(unrolled, xv, yv), list(module.alpha))
    for e, a in zip(estimate, exact, strict=True):
        torch.testing.assert_close(e, a, rtol=1e-4, atol=1e-7)
    first_order = torch.autograd.grad(loss_at(params, xv, yv), list(module.alpha))
    assert any(not torch.allclose(f, a, atol=1e-6) for f, a in zip(first_order, exact, strict=True))


def test_gumbel_samples_follow_softmax_of_alpha_whatever_tau():
    """Gumbel-max: argmax(α + g) is distributed as softmax(α); τ only sharpens the soft rows."""
    alpha = torch.tensor([0.5, -1.0, 1.5, 0.0])
    expected = alpha.softmax(0)
    for tau in (10.0, 0.1):
        g = torch.Generator().manual_seed(0)
        hard, _ = gumbel_straight_through(alpha.expand(20000, -1), tau, g)
        counts = Counter(hard.argmax(1).tolist())
        freq = torch.tensor([counts[i] / 20000 for i in range(4)])
        torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)
        assert bool((hard.detach().sum(1) == 1).all())


def test_gumbel_gradient_is_the_straight_through_estimator():
    alpha = torch.tensor([0.3, -0.2, 0.8], dtype=torch.float64, requires_grad=True)
    tau, c = 0.7, torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    hard, soft = gumbel_straight_through(alpha.unsqueeze(0), tau, torch.Generator().manual_seed(4))
    assert hard.detach().tolist()[0] == [float(i == int(soft.argmax())) for i in range(3)]
    (grad,) = torch.autograd.grad((hard[0] * c).sum(), alpha)
    s = soft.detach()[0]
    by_hand = (torch.diag(s) - torch.outer(s, s)) @ c / tau  # ∂(c·soft)/∂α
    torch.testing.assert_close(grad, by_hand)


def test_darts_cell_derivation_keeps_the_best_op_and_two_inputs_per_node():
    space = DartsCellSpace()
    strengths = {d.name: [0.0] * len(d.options) for d in space.decisions}
    best = {"0<-in0": 0.9, "0<-in1": 0.5, "1<-in0": 0.2, "1<-in1": 0.3, "1<-0": 0.8}
    for edge, value in best.items():
        strengths[f"normal/{edge}"][space.ops.index("sep5x5")] = value
    for name in strengths:  # everything else weak
        strengths[name][space.ops.index("identity")] += 0.01
    arch = space.derive(strengths)
    assert arch["normal/0<-in0"] == ("sep5x5",) and arch["normal/0<-in1"] == ("sep5x5",)
    assert arch["normal/1<-0"] == ("sep5x5",) and arch["normal/1<-in1"] == ("sep5x5",)
    assert arch["normal/1<-in0"] == ()  # third of three into node 1
    for node in range(4):
        into = [e for e in space.edges["normal"] if e.startswith(f"{node}<-")]
        assert sum(bool(arch[f"normal/{e}"]) for e in into) == 2


@pytest.mark.slow
@pytest.mark.parametrize("method", ["darts", "gdas"])
def test_runs_end_to_end_and_the_derived_architecture_retrains(tmp_path, method):
    import train

    run = tmp_path / method
    overrides = [f"experiment=smoke_{method}"] + (["model.order=2"] if method == "darts" else [])
    _train_in_process(run, *overrides)
    out = run / "search" / method
    summary = json.loads((out / "outputs.json").read_text())
    arch = Architecture.load(summary["arch"])
    assert arch.space.name == "nb201" and len(arch.space.to_arch_string(arch)) > 0
    top = Path((out / "selections" / "top.txt").read_text().split()[0])
    assert Architecture.load(top) == arch
    retrain = tmp_path / "retrain"
    cfg = compose_config("train", ["experiment=smoke_standalone", f"arch={top}"], retrain)
    train.train(cfg)
    assert json.loads((retrain / "result.json").read_text())["arch_id"] == arch.id
