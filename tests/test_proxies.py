"""Every zero-cost proxy against its paper's definition, computed by hand on tiny networks."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import NasError
from nas.proxies import PROXIES, proxy_named
from nas.proxies.scoring import proxy_score
from nas.spaces import SPACES
from nas.spaces.nb201 import NB201Space
from tests.conftest import SMALL_SPECS, SPACE_NETWORKS, example_input


def _linear(weight) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float64))
    return layer.double()


W = [[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]]  # 3 classes from 2 features
X = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0], [1.5, 1.0]], dtype=torch.float64)
Y = torch.tensor([0, 2, 1, 1])


def _cross_entropy_gradient() -> np.ndarray:
    """∂/∂W of the mean cross-entropy of logits X Wᵀ: (softmax − one-hot)ᵀ X / N."""
    logits = X.numpy() @ np.array(W).T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return (p - np.eye(3)[Y.numpy()]).T @ X.numpy() / len(X)


def test_every_proxy_is_registered_and_an_unknown_one_is_named():
    assert set(PROXIES) == {
        "params", "macs", "grad_norm", "snip", "synflow", "jacob_cov", "naswot", "init_accuracy"
    }  # fmt: skip
    with pytest.raises(NasError, match=r"proxy='nope' is not a known proxy; choose one of \["):
        proxy_named("nope")


def test_params_and_macs_count_a_convolution_by_hand():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 3))
    images = torch.zeros(5, 1, 4, 4)
    assert proxy_named("params").score(net, images, None) == (2 * 9 + 2) + (32 * 3 + 3)
    # 2 x 4 x 4 outputs of 9 MACs each, then 3 outputs of 32
    assert proxy_named("macs").score(net, images, None) == 32 * 9 + 3 * 32


def test_grad_norm_and_snip_equal_the_cross_entropy_gradient_formula():
    grad = _cross_entropy_gradient()
    assert proxy_named("grad_norm").score(_linear(W), X, Y) == pytest.approx(
        np.linalg.norm(grad), rel=1e-10
    )
    assert proxy_named("snip").score(_linear(W), X, Y) == pytest.approx(
        np.abs(np.array(W) * grad).sum(), rel=1e-10
    )


def test_synflow_is_the_path_flow_of_absolute_weights_with_norms_removed():
    w1, w2 = np.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 1.0]]), np.array([[2.0, -1.0, 0.5]])
    net = nn.Sequential(_linear(w1), nn.BatchNorm1d(3).double(), nn.ReLU(), _linear(w2))
    # R = 1ᵀ|W2||W1|1; each layer's Σ|θ ⊙ ∂R/∂θ| is R again (synaptic flow is conserved)
    flow = (np.abs(w2) @ np.abs(w1) @ np.ones(2)).sum()
    images = torch.randn(4, 2)  # only their shape is used
    assert proxy_named("synflow").score(net, images, None) == pytest.approx(2 * flow, rel=1e-12)
    assert net[0].weight[0, 1].item() == -2.0  # the network itself is left as it was


def test_jacob_cov_of_a_linear_network_has_one_eigenvalue_n_and_the_rest_zero():
    # every image's Jacobian of Σ logits is Wᵀ1: the correlation matrix is all ones
    n, k = len(X), 1e-5
    expected = -((math.log(n + k) + 1 / (n + k)) + (n - 1) * (math.log(k) + 1 / k))
    assert proxy_named("jacob_cov").score(_linear(W), X, Y) == pytest.approx(expected, rel=1e-6)


class _ThreeRelus(nn.Module):
    """Identity weights, so the ReLUs' codes are the signs of the inputs, in three call styles."""

    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()

    def forward(self, x):
        return torch.relu(x) + F.relu(x) + self.act(x) + x.relu() * 0


def test_naswot_is_the_log_determinant_of_the_relu_code_agreements():
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    # codes [1,1], [1,0], [0,0]: agreements [[2,1,0],[1,2,1],[0,1,2]] per ReLU, det 4 for one
    one = nn.Sequential(nn.Identity(), nn.ReLU())
    assert proxy_named("naswot").score(one, x, None) == pytest.approx(math.log(4))
    # four ReLU calls (torch.relu, F.relu, nn.ReLU, Tensor.relu): 4x the kernel, det 4^3 * 4
    assert proxy_named("naswot").score(_ThreeRelus(), x, None) == pytest.approx(math.log(4**4))


def test_init_accuracy_is_the_untrained_networks_accuracy_on_the_batch():
    predicted = (X @ torch.tensor(W, dtype=torch.float64).T).argmax(1)
    expected = (predicted == Y).double().mean().item()
    assert proxy_named("init_accuracy").score(_linear(W), X, Y) == pytest.approx(expected)
    assert 0 < expected < 1  # the case is not trivial


@pytest.mark.slow
def test_scores_of_a_spaces_child_are_seeded_and_leave_the_random_state_alone():
    space = NB201Space()
    arch = space.sample(random.Random(0))
    network = {"filters": 2, "cells": 1, "stages": 1, "num_classes": 3, "in_channels": 1}
    images, labels = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    state = torch.random.get_rng_state()
    first = proxy_score(proxy_named("snip"), arch, network, images, labels, seed=3)
    again = proxy_score(proxy_named("snip"), arch, network, images, labels, seed=3)
    other = proxy_score(proxy_named("snip"), arch, network, images, labels, seed=4)
    assert first[0] == again[0] != other[0] and first[1] >= 0
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(SPACES) - set(SPACE_NETWORKS)))  # the image spaces
def test_every_proxy_scores_the_child_of_every_image_space(name):
    space = SPACES[name](**SMALL_SPECS.get(name, {}))
    network = {"filters": 4, "cells": 2, "stages": 2, "num_classes": 3, "in_channels": 3}
    images, labels = example_input(name, 8, torch.float32), torch.arange(8) % 3
    for arch in (space.sample(random.Random(seed)) for seed in range(2)):
        for proxy in PROXIES.values():
            value, seconds = proxy_score(proxy, arch, network, images, labels, seed=0)
            assert math.isfinite(value) or value == -math.inf, (proxy.name, value)
