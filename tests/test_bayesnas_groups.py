"""BayesNAS's per-cell switches (the authors' form): the group lasso, its gradient, the γ/ω update
and the pruning decision on the copies of one path, by hand; every cell reading its own copy of
the path weights; the tied form of earlier runs still restoring as it was."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nas.errors import NasError
from nas.methods.bayesnas.ard import HierarchicalARD
from nas.methods.bayesnas.module import BayesNASModule
from nas.methods.bayesnas.switches import Switches
from nas.spaces.darts_cell import DartsCellSpace

NETWORK = {"filters": 4, "cells": 2, "stages": 2}  # cells: normal, reduce, normal
EDGE = "normal/0<-in0"


def _two_copies() -> HierarchicalARD:
    """An edge switch and one op switch on it, each with two copies (two cells): groups 0, 1."""
    return HierarchicalARD([0.5, 0.25], [-1, 0], groups=[0, 0, 1, 1]).double()


def test_group_lasso_and_its_gradient_on_two_copies_by_hand():
    ard = _two_copies()
    ard.omega = torch.tensor([2.0, 3.0], dtype=torch.float64)
    s = torch.tensor([0.6, 0.8, 0.3, -0.4], dtype=torch.float64, requires_grad=True)
    penalty = ard.penalty(s)
    # λ_e ω_e ‖(0.6, 0.8)‖ + λ_k ω_k ‖(0.3, -0.4)‖ = 0.5·2·1 + 0.25·3·0.5
    assert float(penalty) == pytest.approx(1.375)
    (grad,) = torch.autograd.grad(penalty, s)
    # ∂/∂s_i = λ_g ω_g s_i / ‖s_g‖: 1·(0.6, 0.8) and 0.75·(0.3, -0.4)/0.5
    torch.testing.assert_close(grad, torch.tensor([0.6, 0.8, 0.45, -0.6], dtype=torch.float64))
    # copies all at 0: the lasso's subgradient 0, not NaN
    zero = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(ard.penalty(zero), zero)
    assert float(ard.penalty(zero)) == 0 and torch.equal(grad, torch.zeros(4, dtype=torch.float64))


def test_one_switch_tied_over_c_cells_is_sqrt_c_times_weaker_than_its_copies():
    for c in (6, 2):  # the normal and reduction cells of the BayesNAS search network
        grouped = HierarchicalARD([0.01], [-1], groups=[0] * c)
        tied = HierarchicalARD([0.01], [-1])
        value = 0.7
        assert float(grouped.penalty(torch.full((c,), value))) == pytest.approx(
            math.sqrt(c) * float(tied.penalty(torch.tensor([value])))
        )


def test_update_of_two_copies_by_hand():
    ard = _two_copies()
    s = torch.tensor([0.6, 0.8, 0.3, -0.4], dtype=torch.float64)
    h = torch.tensor([0.25, 0.75, 0.5, 0.0], dtype=torch.float64)
    ard.update(s, h)
    # Ĥ = H/λ: edge (0.5, 1.5), op (2, 0); γ = 1 before; C = (1/γ + Ĥ)^-1
    c = [1 / 1.5, 1 / 2.5, 1 / 3, 1.0]
    torch.testing.assert_close(ard.variance, torch.tensor(c, dtype=torch.float64))
    # ω_g = sqrt(Σ_copies |1/γ − C/γ²|) with γ = 1
    omega_edge = math.sqrt((1 - c[0]) + (1 - c[1]))
    omega_op = math.sqrt((1 - c[2]) + (1 - c[3]))
    torch.testing.assert_close(ard.omega, torch.tensor([omega_edge, omega_op], dtype=torch.float64))
    # γ_g = ‖s_g‖ / ω_g, then the op's precision adds its edge's
    gamma_edge = 1.0 / omega_edge
    gamma_op = 1 / (1 / (0.5 / omega_op) + 1 / gamma_edge)
    torch.testing.assert_close(ard.gamma, torch.tensor([gamma_edge, gamma_op], dtype=torch.float64))
    torch.testing.assert_close(ard.hessian, h)
    # a second step reads the group's new γ in every copy's C and in ω
    h2 = torch.tensor([1.0, 0.5, 0.25, 0.25], dtype=torch.float64)
    ard.update(s, h2)
    hat = [2.0, 1.0, 1.0, 1.0]
    gam = [gamma_edge, gamma_edge, gamma_op, gamma_op]
    c2 = [1 / (1 / g + x) for g, x in zip(gam, hat, strict=True)]
    torch.testing.assert_close(ard.variance, torch.tensor(c2, dtype=torch.float64))
    w_edge = math.sqrt(sum(abs(1 / gamma_edge - v / gamma_edge**2) for v in c2[:2]))
    w_op = math.sqrt(sum(abs(1 / gamma_op - v / gamma_op**2) for v in c2[2:]))
    torch.testing.assert_close(ard.omega, torch.tensor([w_edge, w_op], dtype=torch.float64))


def test_groups_of_one_are_the_element_wise_form():
    s = torch.tensor([0.8, -1.5, 0.1], dtype=torch.float64)
    h = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    plain = HierarchicalARD([0.5, 0.25, 0.25], [-1, 0, 0]).double()
    listed = HierarchicalARD([0.5, 0.25, 0.25], [-1, 0, 0], groups=[0, 1, 2]).double()
    for ard in (plain, listed):
        ard.update(s, h)
        ard.update(s * 0.5, h * 2)
    for name in ("gamma", "omega", "variance", "hessian"):
        assert torch.equal(getattr(plain, name), getattr(listed, name)), name
    assert torch.equal(plain.penalty(s), listed.penalty(s))


def test_pruning_decides_on_the_groups_gamma_by_hand():
    """Every switch at 1 with H = 1, except op sep3x3 of one edge, whose two copies are (0.03, 0.04).
    Its group's γ relative to the largest: prune above that tau, keep below."""
    lam = 0.01
    module = BayesNASModule(DartsCellSpace.bayesnas(), lam=lam, **NETWORK)
    sw = module.switches
    assert sw.copies[EDGE] == 2 and sw.copies["reduce/0<-in0"] == 1
    values = torch.ones_like(sw.values)
    small = [i for i, g in enumerate(sw.groups.tolist()) if sw.keys[g] == (EDGE, "sep3x3")]
    values[small] = torch.tensor([0.03, 0.04])
    module.ard.update(values, torch.ones_like(values))
    hat = 1 / lam  # Ĥ of every switch; γ = 1 before

    def gamma(norm: float, copies: int) -> float:
        return norm / math.sqrt(copies * (1 - 1 / (1 + hat)))  # ‖s_g‖ / ω_g

    # an edge of c copies at 1: √c / √(c·Ĥ/(1+Ĥ)), the same for 2 copies and for 1
    edge = gamma(math.sqrt(2), 2)
    assert edge == pytest.approx(gamma(1.0, 1))
    largest = 1 / (2 / edge)  # an op at 1 on an edge at 1
    mine = 1 / (1 / gamma(0.05, 2) + 1 / edge)
    relative = mine / largest
    assert 0.05 < relative < 0.1  # ≈ 0.068
    assert module.relevance()[EDGE, "sep3x3"] == pytest.approx(mine, rel=1e-5)
    assert max(g for (_, o), g in module.relevance().items() if o) == pytest.approx(largest)
    assert "sep3x3" not in module.pruned(tau=0.1)[EDGE]
    kept = module.pruned(tau=0.05)
    assert set(kept[EDGE]) == set(module.space.decision(EDGE).options)


@pytest.mark.parametrize("network", ["bayesnas", "darts"])
def test_every_cell_reads_its_own_copy_of_the_path_weights(network):
    """Copy c of a decision's weights off equals the same network with every op of that edge in
    the c-th cell of the type zeroed (each op here ends in a conv or BN: zero parameters, zero out)."""
    ops = ("sep3x3", "dil3x3")
    space = getattr(DartsCellSpace, network)(ops=ops)
    torch.manual_seed(0)
    net = space.build_supernet(**NETWORK, num_classes=3, in_channels=3)
    x = torch.randn(2, 3, 8, 8)
    cells = [c for c in net.cells if c.kind == "normal"]
    assert [c.copy for c in cells] == [0, 1] and net.cells_per_decision()[EDGE] == 2
    outputs = []
    for off in (0, 1):
        weights = space.full_masks(1)
        weights[EDGE] = torch.ones(2, 1, len(ops))
        weights[EDGE][off] = 0.0
        outputs.append(net(x, weights))
        params = list(cells[off].edges["0<-in0"].parameters())
        kept = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p in params:
                p.zero_()
            torch.testing.assert_close(outputs[-1], net(x))
            for p, value in zip(params, kept, strict=True):
                p.copy_(value)
    assert not torch.allclose(outputs[0], outputs[1])  # the two cells' copies differ
    # every copy equal: the same as one weight for all cells
    shared = space.full_masks(1)
    shared[EDGE] = torch.tensor([[0.5, 2.0]])
    per_cell = dict(shared, **{EDGE: shared[EDGE].expand(2, 1, 2)})
    torch.testing.assert_close(net(x, per_cell), net(x, shared))


def test_weights_per_cell_are_refused_where_the_network_weighs_no_cell_apart(small_space):
    net = small_space.build_supernet(filters=4, cells=2, stages=2)
    weights = small_space.full_masks(1)
    name = small_space.decisions[0].name
    weights[name] = weights[name].expand(2, 1, -1)
    with pytest.raises(NasError, match="weighs 1 cell"):
        net(torch.randn(2, 3, 8, 8), weights)


def test_per_cell_gradient_sums_to_the_tied_one():
    """The chain rule through the routing: with every copy equal to the tied switch, the loss's
    gradient w.r.t. the tied switch is the sum over its copies."""
    space = DartsCellSpace.bayesnas(ops=("maxpool3x3", "identity"))  # nonlinear between cells
    torch.manual_seed(0)
    net = space.build_supernet(**NETWORK, num_classes=3, in_channels=3)
    per_cell, tied = Switches(space, net.cells_per_decision()), Switches(space)
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 2])
    grads = []
    for switches in (per_cell, tied):
        loss = F.cross_entropy(net(x, switches.weights()), y)
        grads.append(torch.autograd.grad(loss, switches.values)[0])
    summed = torch.zeros(len(tied.keys)).index_add(0, per_cell.groups, grads[0])
    torch.testing.assert_close(summed, grads[1], rtol=1e-4, atol=1e-6)
    assert len(grads[0]) > len(grads[1]) and per_cell.keys == tied.keys


def test_tied_runs_keep_their_state_and_restore_tied():
    """A tied module's settings lack the switch form and its state has exactly the keys of runs
    written before per-cell switches existed; settings without it restore tied."""
    space = DartsCellSpace.bayesnas(ops=("maxpool3x3", "identity"))  # ops without weights: fast
    tied = BayesNASModule(space, switch_form="tied", **NETWORK)
    assert "switch_form" not in tied.hparams
    state = {k for k in tied.state_dict() if not k.startswith("supernet.")}
    n = len(tied.switches.keys)
    assert state == {
        "switches.values",
        *(f"ard.{b}" for b in ("lambdas", "parents", "gamma", "omega", "variance", "hessian")),
        "ard.updates",
        *{k for k in state if k.startswith(("train_acc", "val_acc", "test_acc"))},
    }
    assert tied.state_dict()["switches.values"].shape == (n,)
    restored = BayesNASModule(**BayesNASModule.restore_arguments(dict(tied.hparams)))
    assert restored.switch_form == "tied"
    restored.load_state_dict(tied.state_dict())
    per_cell = BayesNASModule(space, **NETWORK)
    assert per_cell.hparams["switch_form"] == "per_cell"
    again = BayesNASModule(**BayesNASModule.restore_arguments(dict(per_cell.hparams)))
    assert again.switches.values.shape == per_cell.switches.values.shape
    assert again.switches.values.shape[0] > n


def test_a_bad_switch_form_is_named():
    with pytest.raises(NasError, match=r"model.switch_form='shared' must be one of \['per_cell'"):
        BayesNASModule(DartsCellSpace.bayesnas(), switch_form="shared", **NETWORK)


def test_switches_per_cell_index_their_groups_and_copies():
    space = DartsCellSpace.bayesnas(ops=("sep3x3", "identity"))
    copies = {d.name: 3 if d.name.startswith("normal/") else 1 for d in space.decisions}
    sw = Switches(space, copies)
    with torch.no_grad():
        sw.values.copy_(torch.arange(1, len(sw.values) + 1, dtype=torch.float32))
    w = sw.weights()[EDGE]
    assert w.shape == (3, 1, 2) and sw.weights()["reduce/0<-in0"].shape == (1, 2)
    edge, ops = sw.edge_index[EDGE], sw.op_index[EDGE]
    for c in range(3):
        value = {
            g: float(sw.values[i])
            for i, g in enumerate(sw.groups.tolist())
            if sw.copy_index[i] == c
        }
        torch.testing.assert_close(w[c, 0], torch.tensor([value[edge] * value[k] for k in ops]))


@pytest.mark.slow
def test_per_cell_rounds_train_the_copies_apart_and_restore(tmp_path):
    from nas.spaces import Architecture
    from tests.test_resume import _last, _train_in_process

    space = ["search_space=bayesnas_cell", "~search_space.num_blocks"]
    # one round; a Gauss-Newton of few rows (its batched backward is this test's cost)
    small = ["trainer.max_epochs=1", "model.hessian_batches=1", "model.hessian_examples=2"]
    data = ["dataset.val_size=32", "dataset.test_size=32"]
    _train_in_process(tmp_path, "experiment=smoke_bayesnas", *space, *small, *data)
    ckpt = _last(tmp_path)
    assert ckpt["hyper_parameters"]["switch_form"] == "per_cell"
    module = BayesNASModule.restore(ckpt, tmp_path)
    sw = module.switches
    values, groups = sw.values.detach(), sw.groups
    assert len(values) == sum(sw.copies[d] * (len(sw.op_index[d]) + 1) for d in sw.copies)
    # the two normal cells' copies of a path trained apart: some group's copies now differ
    normal = [g for g, (d, _) in enumerate(sw.keys) if d.startswith("normal/")]
    assert any(len(set(values[groups == g].tolist())) == 2 for g in normal)
    rows = (tmp_path / "search" / "bayesnas" / "gamma.csv").read_text().splitlines()
    assert rows[0].endswith(",copy") and len(rows) == 1 + len(values)
    derived = Architecture.load(tmp_path / "search" / "bayesnas" / "derived_arch.json")
    assert module.pruned() == derived
