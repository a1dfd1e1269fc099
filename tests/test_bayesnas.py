"""BayesNAS: the ARD update against a hand computation, the hierarchy, planted relevance, pruning,
and the training module (rounds, outputs, exact resume)."""

from __future__ import annotations

import json
import math
import signal

import pytest
import torch
import torch.nn.functional as F

from nas.methods.bayesnas.ard import HierarchicalARD, ggn_diagonal, hutchinson_diagonal
from nas.methods.bayesnas.module import BayesNASModule, Switches
from nas.spaces import Architecture
from tests.conftest import compose_config
from tests.test_enas import _train_killed
from tests.test_resume import _assert_same_end, _last, _train_in_process

SMOKE = ["experiment=smoke_bayesnas"]
COMMON = ["trainer.max_epochs=3", "callbacks.last.every_n_train_steps=2", "dataset.pad=1"]


def _linear_task(seed=0, n=256):
    """6 features; the class is the sign of the sum of the first 3 (each needed), 3 are noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g, dtype=torch.float64)
    return x, (x[:, :3].sum(1) > 0).long()


def test_gauss_newton_diagonal_equals_the_hessian_for_logits_linear_in_the_switches():
    torch.manual_seed(0)
    features = torch.randn(6, 4, 3, dtype=torch.float64)  # logits_n = Σ_i s_i features[n, i]
    y = torch.randint(0, 3, (6,))

    def logits_of(s):
        return torch.einsum("nik,i->nk", features, s)

    def loss_of(s):
        return F.cross_entropy(logits_of(s), y)

    s = torch.randn(4, dtype=torch.float64)
    exact = torch.diagonal(torch.autograd.functional.hessian(loss_of, s))
    torch.testing.assert_close(ggn_diagonal(logits_of, s), exact, rtol=1e-10, atol=1e-12)
    estimate = hutchinson_diagonal(loss_of, s, 4000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(estimate, exact, rtol=0.1, atol=0.01)


def test_update_follows_the_equations_by_hand():
    ard = HierarchicalARD([0.5, 0.25, 0.25], [-1, 0, 0]).double()
    ard.gamma = torch.tensor([2.0, 1.0, 4.0], dtype=torch.float64)
    s = torch.tensor([0.8, -1.5, 0.1], dtype=torch.float64)
    h = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    ard.update(s, h)
    for i, (lam, gamma, hess) in enumerate(
        zip([0.5, 0.25, 0.25], [2.0, 1.0, 4.0], h.tolist(), strict=True)
    ):
        c = 1 / (1 / gamma + hess / lam)
        omega = math.sqrt(abs(1 / gamma - c / gamma**2))
        assert float(ard.variance[i]) == pytest.approx(c)
        assert float(ard.omega[i]) == pytest.approx(omega)
    raw = [abs(v) / float(ard.omega[i]) for i, v in enumerate(s.tolist())]
    assert float(ard.gamma[0]) == pytest.approx(raw[0])  # the edge: no parent
    for child in (1, 2):  # precisions add: (1/γ_child + 1/γ_edge)^-1
        assert float(ard.gamma[child]) == pytest.approx(1 / (1 / raw[child] + 1 / raw[0]))
    assert float(ard.penalty(s)) == pytest.approx(
        sum(
            lam * float(w) * abs(v)
            for lam, w, v in zip([0.5, 0.25, 0.25], ard.omega, s.tolist(), strict=True)
        )
    )


def test_an_irrelevant_edge_makes_every_op_on_it_irrelevant():
    ard = HierarchicalARD([0.01] * 4, [-1, 0, 0, 0])
    ard.update(torch.tensor([0.0, 2.0, 1.0, 3.0]), torch.ones(4))  # edge switch driven to 0
    assert ard.gamma[0] == 0 and bool((ard.gamma[1:] == 0).all())
    ard2 = HierarchicalARD([0.01] * 4, [-1, 0, 0, 0])
    ard2.update(torch.tensor([1.0, 2.0, 1.0, 3.0]), torch.ones(4))
    assert bool((ard2.gamma[1:] > 0).all())


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_relevance_noise_switches_are_pruned_signal_kept(seed):
    """A linear model whose inputs pass through switches: 3 carry the class, 3 are pure noise."""
    x, y = _linear_task(seed)
    torch.manual_seed(seed)
    w = torch.nn.Linear(6, 2).double()
    s = torch.nn.Parameter(torch.ones(6, dtype=torch.float64))
    ard = HierarchicalARD([0.02] * 6, [-1] * 6).double()
    opt = torch.optim.SGD([*w.parameters(), s], lr=0.1, momentum=0.9)
    for _ in range(6):  # rounds: train, then one Laplace update
        for _ in range(100):
            loss = F.cross_entropy(w(x * s), y) + ard.penalty(s)
            opt.zero_grad()
            loss.backward()
            opt.step()
        ard.update(s, ggn_diagonal(lambda v: w(x * v), s))
    relative = (ard.gamma / ard.gamma.max()).tolist()
    assert min(relative[:3]) > 0.5 and max(relative[3:]) < 0.02, relative


def _module(space_name="oneshot_cell", **kwargs):
    from nas.spaces import SPACES

    spec = {"oneshot_cell": {"num_blocks": 2}}.get(space_name, {})
    space = SPACES[space_name](**spec)
    return BayesNASModule(space, filters=4, cells=2, stages=2, **kwargs)


def test_switches_are_path_weights_edge_times_op():
    from nas.spaces.darts_cell import DartsCellSpace
    from nas.spaces.nb201 import NB201Space

    space = DartsCellSpace.bayesnas()
    switches = Switches(space)
    with torch.no_grad():
        switches.values.copy_(torch.arange(1, len(switches.keys) + 1, dtype=torch.float32))
    weights = switches.weights()
    d = space.decisions[0]
    edge = float(switches.values[switches.edge_index[d.name]])
    ops = switches.values[switches.op_index[d.name]]
    torch.testing.assert_close(weights[d.name][0], edge * ops)
    assert d.min_k == 0 and len(switches.keys) == sum(len(x.options) + 1 for x in space.decisions)
    assert Switches(NB201Space()).edge_index == {}  # one op per edge: no edge switch


def test_pruning_keeps_relevant_paths_within_each_decisions_limits():
    module = _module()
    keys = module.switches.keys
    gamma = torch.full((len(keys),), 1e-6)
    for i, (_, option) in enumerate(keys):
        if option in ("prev", "sep3x3", "maxpool3x3", "identity"):
            gamma[i] = 1.0
    module.ard.gamma = gamma
    arch = module.pruned(tau=1e-2)
    assert arch["block0/inputs"] == ("prev",)
    assert arch["block1/inputs"] == ("prev",)  # others irrelevant; min_k = 1 keeps the best
    # four ops relevant but max_k = 2: the two of largest gamma (ties: option order)
    assert len(arch["block0/ops"]) == 2


def test_pruning_an_edge_removes_its_ops_and_dead_nodes():
    from nas.spaces.darts_cell import DartsCellSpace

    space = DartsCellSpace.bayesnas()
    module = BayesNASModule(space, filters=4, cells=2, stages=2)
    gamma = torch.ones(len(module.switches.keys))
    for i, (decision, option) in enumerate(module.switches.keys):
        if decision.startswith("normal/0<-") and option is None:
            gamma[i] = 1e-9  # both edges into node 0 irrelevant: node 0 dies
    module.ard.gamma = gamma
    arch = module.pruned()
    assert arch["normal/0<-in0"] == () and arch["normal/0<-in1"] == ()
    assert arch["normal/3<-0"] == ()  # out of the dead node: removed by simplify
    assert arch["normal/3<-in0"] != ()
    assert Architecture.from_json(arch.to_json(), space) == arch


@pytest.mark.slow
def test_rounds_update_the_priors_once_per_epoch_and_write_a_search_result(tmp_path):
    _train_in_process(tmp_path, *SMOKE)
    ckpt = _last(tmp_path)
    assert int(ckpt["state_dict"]["ard.updates"]) == 2
    assert ckpt["module_class"] == "nas.methods.bayesnas.module.BayesNASModule"
    out = tmp_path / "search" / "bayesnas"
    summary = json.loads((out / "outputs.json").read_text())
    arch = Architecture.load(summary["arch"])
    assert arch.space.name == "oneshot_cell"
    assert (out / "gamma.png").stat().st_size > 0
    rows = (out / "gamma.csv").read_text().splitlines()
    assert rows[0].startswith("decision,option,kind,switch,gamma")
    assert len(rows) == 1 + sum(len(d.options) for d in arch.space.decisions)
    ranking = (out / "ranking.csv").read_text().splitlines()
    assert len(ranking) == 2 and arch.id in ranking[1]
    top = (out / "selections" / "top.txt").read_text().split()
    assert Architecture.load(top[0]) == arch


def test_phase_a_leaves_the_switches_alone(tmp_path):
    cfg = compose_config("train", [*SMOKE, "trainer.max_epochs=1", "trainer.max_steps=1"], tmp_path)
    import train

    train.train(cfg)
    state = _last(tmp_path)["state_dict"]
    assert torch.equal(state["switches.values"], torch.ones_like(state["switches.values"]))


@pytest.mark.slow
def test_killed_mid_phase_b_and_resumed_equals_uninterrupted(tmp_path_factory):
    reference = tmp_path_factory.mktemp("bayesnas-reference")
    overrides = [*SMOKE, *COMMON]
    _train_in_process(reference, *overrides)
    run = tmp_path_factory.mktemp("bayesnas-killed")
    proc = _train_killed(run, overrides, "tests.test_resume.KillAt", "step=7")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _last(run)["global_step"] == 6
    _train_in_process(run, *overrides, "resume=true")
    _assert_same_end(reference, run)


def test_update_stays_exact_for_tiny_gamma_and_prunes_switches_without_curvature():
    ard = HierarchicalARD([0.1] * 3, [-1] * 3)  # float32, as in training
    ard.gamma = torch.tensor([1e-6, 0.0, 1.0])
    ard.update(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.01, 0.01, 0.0]))
    # ω² = Ĥ / (1 + γĤ) with Ĥ = 0.1: the textbook form 1/γ − C/γ² loses it at γ = 1e-6 in float32
    assert float(ard.omega[0]) == pytest.approx(math.sqrt(0.1 / (1 + 1e-7)), rel=1e-6)
    assert float(ard.omega[1]) == pytest.approx(math.sqrt(0.1), rel=1e-6)  # γ = 0: finite
    assert float(ard.gamma[2]) == 0.0  # no curvature: the loss does not see it, no evidence
    assert bool(torch.isfinite(ard.penalty(torch.ones(3))))


@pytest.mark.slow
def test_planted_useless_paths_of_a_supernet_are_pruned(tmp_path):
    """NAS-Bench-201 edges with ops {none, conv 3x3}: a none path outputs zeros whatever its switch
    (provably useless), a conv path carries the signal. Trained BayesNAS must prune every none and
    keep every conv."""
    overrides = [
        *SMOKE,
        "search_space=nb201",
        "search_space.ops=[none,nor_conv_3x3]",
        "~search_space.num_blocks",
    ]
    _train_in_process(tmp_path, *overrides)
    state = _last(tmp_path)["state_dict"]
    space = Architecture.load(tmp_path / "search" / "bayesnas" / "derived_arch.json").space
    gamma = dict(zip(Switches(space).keys, state["ard.gamma"].tolist(), strict=True))
    assert all(g == 0 for (_, op), g in gamma.items() if op == "none")
    assert all(g > 0 for (_, op), g in gamma.items() if op == "nor_conv_3x3")
    arch = Architecture.load(tmp_path / "search" / "bayesnas" / "derived_arch.json")
    assert all(arch[d.name] == ("nor_conv_3x3",) for d in space.decisions)
