"""One-shot evaluation: packing several architectures into one pass changes no score."""

from __future__ import annotations

import random

import torch

from nas.search.evaluator import OneShotEvaluator


def test_packed_scores_equal_one_at_a_time_and_direct_computation(small_space):
    torch.manual_seed(0)
    net = small_space.build_supernet(filters=4, cells=2, stages=2, num_classes=5).eval()
    images, labels = torch.randn(22, 3, 8, 8), torch.randint(0, 5, (22,))
    evaluator = OneShotEvaluator(net, images, labels, batch_size=10, ghost_size=4)
    rng = random.Random(0)
    archs = [small_space.sample(rng) for _ in range(5)]
    packed = [r["oneshot_acc"] for r in evaluator(archs)]
    alone = [evaluator([a])[0]["oneshot_acc"] for a in archs]
    assert packed == alone
    for arch, score in zip(archs, packed, strict=True):
        masks = small_space.encode([arch])
        with torch.no_grad():
            hits = sum(
                int((net(x, masks, 4).argmax(1) == y).sum())
                for x, y in zip(images.split(10), labels.split(10), strict=True)
            )
        assert score == hits / 22
