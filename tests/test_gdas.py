"""GDAS as its authors ran it: both estimators by hand and against AutoDL's forward, the τ schedule,
the weight step before the α step (and resuming between them), and the settings' errors."""

from __future__ import annotations

import csv
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from nas.errors import NasError
from nas.methods.darts.module import DARTSModule
from nas.methods.gdas.module import GDASModule, annealed_tau, gumbel_straight_through
from nas.routing import GhostLayout, PathWeights
from nas.spaces.nb201 import EDGES, NB201_OPS, NB201Space
from nas.spaces.nb201.network import NB201Cell
from tests.test_resume import _last, _train_in_process

OPS = NB201_OPS  # none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
# two cells sharing each edge's weights (the with_unsampled gradient sums over both), one stage
NETWORK = {"filters": 2, "cells": 2, "stages": 1, "num_classes": 3, "in_channels": 1}


def _one_hot(op: str) -> torch.Tensor:
    return torch.tensor([[float(o == op) for o in OPS]], dtype=torch.float64)


def _softmax_jacobian(s: torch.Tensor, tau: float) -> torch.Tensor:
    """∂ softmax((α + g) / τ) / ∂α at the soft row s: (diag(s) - s sᵀ) / τ (symmetric)."""
    return (torch.diag(s) - torch.outer(s, s)) / tau


@pytest.mark.parametrize("estimator", ["sampled", "with_unsampled"])
def test_each_estimator_on_one_edge_by_hand(estimator):
    """Edge 1<-0 sampled per ghost batch (nor_conv_3x3 in the first, none in the second), the rest
    of the cell fixed so that its output is node 1: forward value and α's gradient by hand."""
    torch.manual_seed(0)
    cell = NB201Cell(2, {e: OPS for e in EDGES}, ghost=True).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    c = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)  # L = Σ c · out
    tau = 5.0  # soft rows far from one-hot: every term of the gradient counts
    alpha = torch.tensor([0.2, -0.1, 0.4, 0.3, -0.5], dtype=torch.float64, requires_grad=True)
    favour = torch.zeros(2, 5, dtype=torch.float64)
    favour[0, OPS.index("nor_conv_3x3")] = favour[1, OPS.index("none")] = 6.0
    hard, soft = gumbel_straight_through(alpha + favour, tau, torch.Generator().manual_seed(1))
    sampled = hard.detach().argmax(1).tolist()
    assert sampled == [OPS.index("nor_conv_3x3"), OPS.index("none")]  # the draws this test needs
    weights = {e: _one_hot("none") for e in EDGES}
    weights["1<-0"], weights["3<-1"] = hard, _one_hot("skip_connect")  # out = node 1
    layout = GhostLayout(4, 2, torch.device("cpu"))
    routed = PathWeights.for_decisions({e: (OPS, w) for e, w in weights.items()}, layout)
    out = cell(x, layout.ghost, routed, add_zero_weights=estimator == "with_unsampled")

    conv = cell.edges["1<-0"]["nor_conv_3x3"]
    torch.testing.assert_close(out[:2], conv(x[:2], 2))  # ghost batch 0: the sampled op's output
    torch.testing.assert_close(out[2:], torch.zeros_like(out[2:]))  # ghost batch 1: none
    (grad,) = torch.autograd.grad((c * out).sum(), alpha, allow_unused=True)
    grad = torch.zeros_like(alpha) if grad is None else grad

    s = soft.detach()
    jacobians = [_softmax_jacobian(s[0], tau), _softmax_jacobian(s[1], tau)]
    # ∂L/∂h_k of the sampled op: Σ c · op_k(x) over its ghost batch ("none": 0)
    by_hand = jacobians[0][sampled[0]] * (c[:2] * conv(x[:2], 2)).sum()
    with_others = by_hand.clone()
    for ghost, rows in ((0, slice(0, 2)), (1, slice(2, 4))):
        for i in range(len(OPS)):
            if i != sampled[ghost]:  # ∂L/∂h_i = Σ c over the ghost batch: the edge's output sum
                with_others = with_others + jacobians[ghost][i] * c[rows].sum()
    torch.testing.assert_close(grad, by_hand if estimator == "sampled" else with_others)
    assert not torch.allclose(by_hand, with_others)  # the two estimators differ here


def _autodl_logits(net, x, hardwts: dict, add_others: bool) -> torch.Tensor:
    """AutoDL-Projects' TinyNetworkGDAS forward on `net`'s modules, one sample for the batch:
    on every edge h_k · op_k(x) for the sampled k, plus h_i for every other op when `add_others`
    (`NAS201SearchCell.forward_gdas`; without: the DARTS-space `MixedOp.forward_gdas` rule)."""
    h = net.stem_bn(net.stem(x), None)
    for layer in net.cells:
        if not isinstance(layer, NB201Cell):
            h = layer(h, None)
            continue
        nodes = [h]
        for j in range(1, 4):
            node = 0
            for i in range(j):
                w = hardwts[f"{j}<-{i}"][0]
                k = int(w.detach().argmax())
                ops = layer.edges[f"{j}<-{i}"]
                for o, name in enumerate(OPS):
                    if o == k:  # AutoDL's "none" is a module that outputs x * 0
                        out = ops[name](nodes[i], None) if name in ops else nodes[i] * 0
                        node = node + w[o] * out
                    elif add_others:
                        node = node + w[o]
            nodes.append(node)
        h = nodes[-1]
    return net.classifier(torch.relu(net.final_bn(h, None)).mean(dim=(2, 3)))


def test_module_gradients_equal_autodl_forward_for_both_estimators():
    space, g = NB201Space(), torch.Generator().manual_seed(2)
    xv = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    yv = torch.randint(0, 3, (6,), generator=g)
    results = {}
    for estimator in ("sampled", "with_unsampled"):
        torch.manual_seed(0)
        module = GDASModule(
            space, estimator=estimator, tau_max=2.0, ghost_size=6, mask_seed=3, **NETWORK
        ).double()
        assert module.supernet.add_zero_weights == (estimator == "with_unsampled")
        with torch.no_grad():
            for a in module.alpha:
                a.normal_(generator=g)
        draws = torch.Generator()
        draws.set_state(module.mask_generator.get_state())  # the draws the module will make
        grads = module.arch_gradients(None, None, xv, yv)
        hardwts = {
            d.name: gumbel_straight_through(a.expand(1, -1), 2.0, draws)[0]
            for d, a in zip(space.decisions, module.alpha, strict=True)
        }
        logits = _autodl_logits(module.supernet, xv, hardwts, estimator == "with_unsampled")
        reference = torch.autograd.grad(F.cross_entropy(logits, yv), list(module.alpha))
        for ours, theirs in zip(grads, reference, strict=True):
            torch.testing.assert_close(ours, theirs)
        results[estimator] = torch.cat(grads)
    assert not torch.allclose(results["sampled"], results["with_unsampled"])


def _with_trainer(module, **state):
    """`module` answering `trainer.<key>` (and current_epoch, global_step) from `state`."""
    module._trainer = SimpleNamespace(**state)
    return module


@pytest.mark.parametrize("epochs", [1, 2, 5, 250])
def test_tau_per_epoch_follows_the_authors_formula(epochs):
    module = GDASModule(NB201Space(), tau_max=10.0, tau_min=0.1, **NETWORK)
    assert module.tau() == 10.0  # before training
    for epoch in range(epochs):
        _with_trainer(module, max_epochs=epochs, current_epoch=epoch, global_step=7 * epoch)
        expected = 10.0 - (10.0 - 0.1) * epoch / (epochs - 1) if epochs > 1 else 10.0
        assert module.tau() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert module.tau() == pytest.approx(0.1 if epochs > 1 else 10.0)


def test_tau_per_step_is_linear_over_the_steps():
    module = GDASModule(NB201Space(), tau_schedule="step", **NETWORK)
    for step in (0, 1, 50, 99, 150):
        _with_trainer(module, estimated_stepping_batches=100, global_step=step, current_epoch=0)
        assert module.tau() == pytest.approx(10.0 - 9.9 * min(1.0, step / 99), rel=1e-12)
    assert annealed_tau(4.0, 1.0, 3, 1) == 4.0  # a single epoch or step: tau_max throughout


def test_nesterov_reaches_the_weights_optimizer():
    for nesterov, momentum, expected in (
        (True, 0.9, True),
        (False, 0.9, False),
        (True, 0.0, False),
    ):
        module = GDASModule(NB201Space(), nesterov=nesterov, momentum=momentum, **NETWORK)
        _with_trainer(module, max_epochs=3)
        optimizer = module.configure_optimizers()["optimizer"]
        assert optimizer.param_groups[0]["nesterov"] is expected
        assert module.hparams.nesterov is nesterov  # a setting: checkpoints keep it


def test_bad_settings_are_refused_clearly(small_space):
    space = NB201Space()
    cases = [
        (lambda: GDASModule(space, estimator="gumbel", **NETWORK), "model.estimator='gumbel'"),
        (lambda: GDASModule(space, tau_schedule="cos", **NETWORK), "model.tau_schedule='cos'"),
        (lambda: GDASModule(space, step_order="both", **NETWORK), "model.step_order='both'"),
        (
            lambda: DARTSModule(space, order=2, step_order="weights_first", **NETWORK),
            "model.order=2 with model.step_order='weights_first'",
        ),
        (
            lambda: GDASModule(small_space, estimator="with_unsampled", **NETWORK),
            "the 'oneshot_cell' space's supernet does not",
        ),
        (lambda: NB201Space(cell_bn_affine="no"), "search_space.cell_bn_affine='no' must be"),
    ]
    for build, fragment in cases:
        with pytest.raises(NasError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            build()
    module = _with_trainer(GDASModule(space, **NETWORK), max_epochs=-1)
    with pytest.raises(NasError, match="model.tau_schedule=epoch anneals tau over trainer"):
        module.on_fit_start()  # training limited by max_steps only: no epochs to anneal over


class Recorder(Callback):
    """Test helper: the supernet's weights at each batch's start and end (after its weight step)."""

    events: ClassVar[list] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        Recorder.events.append(("start", _flat(pl_module)))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        Recorder.events.append(("end", _flat(pl_module)))  # the module's own hook comes after


class StopAt(Callback):
    """Test helper: the run fails right after training step `step` (a crash mid-epoch)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("stopped by the test")


def _flat(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.supernet.parameters()]).clone()


# The NAS-Bench-201 recipe in small: 2 epochs of 4 steps, last.ckpt every 2 steps.
RECIPE = [
    "experiment=smoke_gdas",
    "trainer.max_epochs=2",
    "callbacks.last.every_n_train_steps=2",
    "model.step_order=weights_first",
    "model.estimator=with_unsampled",
    "model.nesterov=true",
    "search_space.cell_bn_affine=false",
]


@pytest.mark.slow
def test_weights_first_takes_alpha_at_the_new_weights_and_resumes_exactly(tmp_path, monkeypatch):
    original = GDASModule.arch_gradients

    def recorded(self, *args):
        Recorder.events.append(("alpha", _flat(self)))
        return original(self, *args)

    monkeypatch.setattr(GDASModule, "arch_gradients", recorded)
    Recorder.events = []
    reference = tmp_path / "reference"
    _train_in_process(reference, *RECIPE, "+callbacks.rec._target_=tests.test_gdas.Recorder")
    kinds = [kind for kind, _ in Recorder.events]
    assert kinds == ["start", "end", "alpha"] * 8  # every α step after its step's weight step
    for t in range(8):
        start, end, alpha = (w for _, w in Recorder.events[3 * t : 3 * t + 3])
        assert torch.equal(alpha, end) and not torch.equal(alpha, start)
    with open(reference / "csv" / "metrics.csv", newline="") as f:
        taus = {float(r["gdas/tau"]) for r in csv.DictReader(f) if r.get("gdas/tau")}
    assert sorted(taus) == pytest.approx([0.1, 10.0])  # epoch 0, then the last epoch

    crashed = tmp_path / "crashed"  # the last.ckpt of step 2 falls between its weight and α steps
    with pytest.raises(RuntimeError, match="stopped by the test"):
        _train_in_process(
            crashed,
            *RECIPE,
            "+callbacks.stop._target_=tests.test_gdas.StopAt",
            "+callbacks.stop.step=3",
        )
    assert _last(crashed)["global_step"] == 2 and _last(crashed)["pending_arch_step"] == 1
    _train_in_process(crashed, *RECIPE, "resume=true")
    ref, res = _last(reference), _last(crashed)
    assert res["global_step"] == ref["global_step"] == 8 and res["pending_arch_step"] is None
    assert ref["state_dict"].keys() == res["state_dict"].keys()
    assert not any(".bn.weight" in k for k in ref["state_dict"] if ".edges." in k)  # affine-free
    for name, value in ref["state_dict"].items():
        torch.testing.assert_close(res["state_dict"][name], value, rtol=0, atol=1e-6, msg=name)
    assert torch.equal(ref["mask_generator"], res["mask_generator"])
