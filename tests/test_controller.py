"""The ENAS controller and REINFORCE: valid samples, reported probabilities, learning a known reward."""

from __future__ import annotations

import copy
import math
import random
from collections import Counter

import pytest
import torch
from scipy.stats import chisquare

from nas.errors import NasError
from nas.methods.enas.controller import BERNOULLI, POINTER_BERNOULLI, Controller
from nas.methods.enas.reinforce import Reinforce
from nas.spaces import SPACES, Architecture
from nas.spaces.nb201 import NB201Space
from nas.spaces.oneshot_cell import OneShotCellSpace


def _tiny_spaces():
    """Small spaces (64-256 architectures) covering every way the controller draws a decision."""
    spaces = [NB201Space(ops=["none", "nor_conv_3x3"])]  # one-of-k over names
    spaces.append(OneShotCellSpace(num_blocks=1, ops=["identity", "sep3x3"]))  # subsets
    if "enas_macro" in SPACES:  # any-subset pointers (skips)
        spaces.append(SPACES["enas_macro"](layers=3, ops=["conv3x3", "maxpool3x3"]))
    if "enas_micro" in SPACES:  # one-of-k pointers (inputs) and ops, two cells
        spaces.append(SPACES["enas_micro"](nodes=3, ops=["sep3x3", "identity"]))
    return spaces


TINY = _tiny_spaces()


def _controller(space, **kwargs):
    # a wide initialisation makes the policy far from uniform, so wrong probabilities would show
    return Controller(space, seed=0, init_range=1.0, tanh_constant=2.5, **kwargs)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_samples_are_valid_architectures_of_every_space(name):
    space = SPACES[name]()
    controller = Controller(space, seed=1)
    sample = controller(16, torch.Generator().manual_seed(0))
    assert len(sample.archs) == 16 and len({a.id for a in sample.archs}) > 1
    for arch in sample.archs:  # Architecture validates min_k/max_k; the JSON round trip too
        assert Architecture.from_json(arch.to_json(), space) == arch
    assert torch.isfinite(sample.log_prob).all() and (sample.log_prob < 0).all()
    assert controller.greedy().space is space


@pytest.mark.parametrize("space", TINY, ids=lambda s: s.name)
def test_empirical_distribution_matches_the_reported_probabilities(space):
    assert space.count() <= 256
    controller = _controller(space)
    archs = list(space.enumerate())
    with torch.no_grad():
        probs = controller(archs=archs).log_prob.double().exp()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)  # a distribution over the space
    n = 20_000
    generator = torch.Generator().manual_seed(3)
    counts = Counter(a.id for _ in range(n // 500) for a in controller.sample(500, generator))
    observed = [counts[a.id] for a in archs]
    expected = (probs / probs.sum() * n).tolist()
    # pool the rare architectures so every expected count is >= 5 (chi-square's validity rule)
    order = sorted(range(len(archs)), key=lambda i: expected[i])
    obs, exp, acc_o, acc_e = [], [], 0, 0.0
    for i in order:
        acc_o, acc_e = acc_o + observed[i], acc_e + expected[i]
        if acc_e >= 5:
            obs.append(acc_o)
            exp.append(acc_e)
            acc_o, acc_e = 0, 0.0
    exp[-1] += acc_e
    obs[-1] += acc_o
    assert chisquare(obs, exp).pvalue > 1e-3


@pytest.mark.parametrize("space", TINY, ids=lambda s: s.name)
def test_log_prob_and_entropy_are_the_sums_over_decisions(space):
    controller = _controller(space)
    sample = controller(8, torch.Generator().manual_seed(0))
    log_prob, entropy = torch.zeros(8), torch.zeros(8)
    for d in space.decisions:
        p = sample.probs[d.name].double()
        if controller.modes[d.name] in (BERNOULLI, POINTER_BERNOULLI):  # P(on) per option
            on = torch.tensor([[o in a[d.name] for o in d.options] for a in sample.archs])
            log_prob += torch.where(on, p.log(), (1 - p).log()).sum(1).float()
            entropy -= (p * p.log() + (1 - p) * (1 - p).log()).sum(1).float()
        else:  # one probability per class: an option, or a subset of options
            classes = (
                [(o,) for o in d.options]
                if controller.modes[d.name] == "pointer"
                else controller.classes[controller.kind_of[d.name]]
            )
            index = torch.tensor([classes.index(a[d.name]) for a in sample.archs])
            log_prob += p.gather(1, index[:, None]).squeeze(1).log().float()
            entropy -= (p * p.log()).sum(1).float()
    torch.testing.assert_close(sample.log_prob, log_prob, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sample.entropy, entropy, rtol=1e-4, atol=1e-4)
    forced = controller(archs=sample.archs)  # teacher forcing scores the same choices
    torch.testing.assert_close(forced.log_prob, sample.log_prob)


def test_skip_penalty_is_the_mean_kl_to_the_target():
    if "enas_macro" not in SPACES:
        pytest.skip("no enas_macro space")
    space = SPACES["enas_macro"](layers=4)
    controller = _controller(space, skip_target=0.3)
    sample = controller(4, torch.Generator().manual_seed(0))
    kls = []
    for d in space.decisions:
        if d.name.endswith("/skip"):
            p = sample.probs[d.name].double()
            kls.append((p * (p / 0.3).log() + (1 - p) * ((1 - p) / 0.7).log()).sum(1))
    expected = torch.stack(kls, 1).mean(1).float()
    torch.testing.assert_close(sample.skip_kl, expected, rtol=1e-4, atol=1e-5)


def test_greedy_takes_the_most_likely_choice_at_every_step():
    space = NB201Space()
    controller = _controller(space)
    greedy = controller.greedy()
    probs = controller(archs=[greedy]).probs
    for d in space.decisions:
        assert d.options[int(probs[d.name][0].argmax())] == greedy[d.name][0]


def test_reinforce_learns_a_known_reward_and_the_baseline_tracks_it():
    """Reward = fraction of edges choosing nor_conv_3x3: the best architecture has them all."""
    space = NB201Space()
    best = space.architecture({d.name: ["nor_conv_3x3"] for d in space.decisions})
    controller = Controller(space, seed=0, tanh_constant=None)  # tanh would cap probabilities
    learner = Reinforce(controller, lr=0.01, baseline_decay=0.9, entropy_weight=0.0)
    generator = torch.Generator().manual_seed(0)
    p_start = float(controller(archs=[best]).log_prob.detach().exp())
    assert p_start < 0.01  # about (1/5)^6 at the start
    rewards_seen, baselines = [], []
    for _ in range(80):
        archs = controller.sample(10, generator)
        rewards = [sum(a[d.name] == ("nor_conv_3x3",) for d in space.decisions) / 6 for a in archs]
        metrics = learner.update(archs, rewards)
        rewards_seen.append(sum(rewards) / len(rewards))
        baselines.append(metrics["controller/baseline"])
    assert float(controller(archs=[best]).log_prob.detach().exp()) > 0.9
    # the baseline is a moving average of the rewards: it follows their mean within a few updates
    recent = sum(rewards_seen[-10:]) / 10
    assert abs(baselines[-1] - recent) < 0.05
    assert baselines[0] < 0.2 < 0.8 < baselines[-1]


def test_reinforce_update_follows_the_formula():
    """One update: advantage with the old baseline, then b <- b - (1 - decay)(b - R)."""
    space = NB201Space(ops=["none", "nor_conv_3x3"])
    controller = Controller(space, seed=0)
    learner = Reinforce(controller, lr=0.1, baseline_decay=0.5, entropy_weight=0.01)
    learner.baseline = 0.2
    archs = controller.sample(2, torch.Generator().manual_seed(0))
    out = controller(archs=archs)
    reward = [0.6, 0.9]
    totals = [r + 0.01 * e for r, e in zip(reward, out.entropy.tolist(), strict=True)]
    b1 = 0.2 - 0.5 * (0.2 - totals[0])
    advantages = [totals[0] - 0.2, totals[1] - b1]
    expected_loss = -(out.log_prob * torch.tensor(advantages)).mean() + 0.8 * out.skip_kl.mean()
    metrics = learner.update(archs, reward)
    assert metrics["controller/loss"] == pytest.approx(float(expected_loss), rel=1e-5)
    assert learner.baseline == pytest.approx(b1 - 0.5 * (b1 - totals[1]))


def test_bad_settings_and_spaces_are_refused():
    space = NB201Space()
    with pytest.raises(NasError, match="controller.hidden=0"):
        Controller(space, hidden=0)
    with pytest.raises(NasError, match="temperature"):
        Controller(space, temperature=0)
    big = OneShotCellSpace(num_blocks=1, ops=[f"sep{k}x{k}" for k in (3, 5, 7)] * 1, max_ops=3)
    Controller(big)  # 7 subsets: fine
    with pytest.raises(NasError, match="REINFORCE needs one reward"):
        Reinforce(Controller(space)).update([space.sample(random.Random(0))], [])


def test_state_round_trip_continues_identically():
    space = NB201Space()
    a = Controller(space, seed=0)
    ra = Reinforce(a, lr=0.01)
    g = torch.Generator().manual_seed(0)
    ra.update(a.sample(4, g), [0.1, 0.2, 0.3, 0.4])
    b = Controller(space, seed=5)
    rb = Reinforce(b, lr=0.01)
    # deep copies, as a checkpoint file gives (load_state_dict keeps same-device tensors shared)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    rb.load_state_dict(copy.deepcopy(ra.state_dict()))
    archs = a.sample(4, g)
    ra.update(archs, [0.5, 0.1, 0.9, 0.3])
    rb.update(archs, [0.5, 0.1, 0.9, 0.3])
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert math.isclose(ra.baseline, rb.baseline)
