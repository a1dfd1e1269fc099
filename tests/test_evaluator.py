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


def test_bn_recalibration_scores_the_child_with_statistics_of_the_training_batches(small_space):
    """SPOS's evaluation: BN statistics re-estimated on training batches, then fixed (eval mode)."""
    torch.manual_seed(1)
    net = small_space.build_supernet(filters=4, cells=2, stages=2, num_classes=5).eval()
    images, labels = torch.randn(20, 3, 8, 8), torch.randint(0, 5, (20,))
    calibration = [torch.randn(16, 3, 8, 8) * 2 + 0.5 for _ in range(3)]  # shifted: stats differ
    plain = OneShotEvaluator(net, images, labels, batch_size=10, ghost_size=4)
    recal = OneShotEvaluator(net, images, labels, 10, 4, recalibration=calibration)
    rng = random.Random(2)
    archs = [small_space.sample(rng) for _ in range(4)]
    scores = recal.accuracies(archs)
    assert scores != plain.accuracies(archs)  # the mode matters
    for arch, score in zip(archs, scores, strict=True):
        # reference: each BN's running mean/var = average over batches of its input's batch mean
        # and unbiased variance, recorded by hooks on a train-mode pass of the child
        child = net.extract(arch, copy_weights=True).train()
        seen: dict[torch.nn.Module, list] = {}

        def record(m, inputs, output, seen=seen):
            x = inputs[0]
            seen.setdefault(m, []).append((x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=True)))

        hooks = [
            m.register_forward_hook(record)
            for m in child.modules()
            if isinstance(m, torch.nn.BatchNorm2d)
        ]
        with torch.no_grad():
            for x in calibration:
                child(x)
        for h in hooks:
            h.remove()
        for m, stats in seen.items():
            m.running_mean.copy_(torch.stack([s[0] for s in stats]).mean(0))
            m.running_var.copy_(torch.stack([s[1] for s in stats]).mean(0))
        with torch.no_grad():
            hits = int((child.eval()(images).argmax(1) == labels).sum())
        assert score == hits / 20


def test_channels_last_ranking_gives_the_same_scores(small_space):
    torch.manual_seed(3)
    net = small_space.build_supernet(filters=4, cells=2, stages=2, num_classes=5).eval()
    images, labels = torch.randn(24, 3, 8, 8), torch.randint(0, 5, (24,))
    rng = random.Random(4)
    archs = [small_space.sample(rng) for _ in range(4)]
    nchw = OneShotEvaluator(net, images, labels, 12, 4).accuracies(archs)
    clone = small_space.build_supernet(filters=4, cells=2, stages=2, num_classes=5)
    clone.load_state_dict(net.state_dict())
    nhwc = OneShotEvaluator(clone, images, labels, 12, 4, channels_last=True)
    assert next(p for p in clone.parameters() if p.dim() == 4).is_contiguous(
        memory_format=torch.channels_last
    )
    assert nhwc.accuracies(archs) == nchw
