"""Ghost batch norm: statistics per ghost batch, in training and evaluation mode alike."""

from __future__ import annotations

import random

import pytest
import torch

from nas.ghost_bn import METHODS, GhostBatchNorm, ghost_normalize, ghost_sizes, per_example


def _reference(x, weight, bias, eps):
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


@pytest.mark.parametrize("batch, ghost", [(12, 4), (10, 4), (8, 8), (5, 16)])
@pytest.mark.parametrize("training", [True, False])
def test_each_ghost_batch_is_normalised_alone(batch, ghost, training):
    torch.manual_seed(0)
    bn = GhostBatchNorm(3, track_running_stats=False)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    bn.train(training)
    x = torch.randn(batch, 3, 5, 5) * 3 + 1
    y = bn(x, ghost)
    expected = torch.cat([_reference(c, bn.weight, bn.bias, bn.eps) for c in x.split(ghost)])
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sizes", [[12], [4, 4, 4], [4, 4, 2], [3, 5]])
def test_every_statistics_method_normalises_each_ghost_batch_alone(method, sizes):
    """The device's choice among the methods changes nothing but speed (where a method applies)."""
    if (method == "native" and len(sizes) > 1) or (method == "var_mean" and len(set(sizes)) > 1):
        method = None  # not applicable: the function falls back to a valid method
    x = torch.randn(sum(sizes), 3, 4, 4, dtype=torch.float64) * 2 + 1
    ones, zeros = torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    expected = torch.cat([_reference(c, ones, zeros, 1e-5) for c in x.split(sizes)])
    torch.testing.assert_close(ghost_normalize(x, sizes, 1e-5, method), expected)
    w, b = torch.rand(3, dtype=torch.float64) + 0.5, torch.randn(3, dtype=torch.float64)
    expected = torch.cat([_reference(c, w, b, 1e-5) for c in x.split(sizes)])
    torch.testing.assert_close(ghost_normalize(x, sizes, 1e-5, method, w, b), expected)
    nhwc = x.contiguous(memory_format=torch.channels_last)  # the ranking layout on the CPU
    torch.testing.assert_close(ghost_normalize(nhwc, sizes, 1e-5, method, w, b), expected)


def test_no_ghost_size_is_plain_batchnorm_with_running_stats():
    torch.manual_seed(0)
    bn, ref = GhostBatchNorm(4), torch.nn.BatchNorm2d(4)
    x = torch.randn(8, 4, 3, 3)
    torch.testing.assert_close(bn(x), ref(x))
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    bn.eval(), ref.eval()
    torch.testing.assert_close(bn(x), ref(x))


def test_sizes_and_per_example_expansion():
    assert (
        ghost_sizes(10, 4) == [4, 4, 2] and ghost_sizes(8, 4) == [4, 4] and ghost_sizes(3, 8) == [3]
    )
    rows = torch.tensor([[1.0], [2.0], [3.0]])
    assert per_example(rows, 10, 4).squeeze(1).tolist() == [1] * 4 + [2] * 4 + [3] * 2
    assert per_example(rows[:1], 5, 2).squeeze(1).tolist() == [1] * 5


def test_supernet_batch_equals_ghost_batches_run_alone(small_space):
    """A batch of G ghost batches, each with its own mask, equals running every ghost batch alone."""
    torch.manual_seed(0)
    net = small_space.build_supernet(filters=4, cells=2, stages=2, num_classes=5)
    rng = random.Random(0)
    archs = [small_space.sample(rng) for _ in range(3)]
    masks = small_space.encode(archs)
    x = torch.randn(3 * 4, 3, 8, 8)
    for training in (True, False):
        net.train(training)
        together = net(x, masks, 4)
        alone = torch.cat(
            [
                net(x[4 * g : 4 * (g + 1)], {k: m[g : g + 1] for k, m in masks.items()}, 4)
                for g in range(3)
            ]
        )
        torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
