"""Masked L2: weight decay only on the weights of paths the sampled architectures use."""

from __future__ import annotations

import torch

from nas.modules import OneShotModule


def _module(space, l2=1e-2):
    torch.manual_seed(0)
    return OneShotModule(space, filters=4, cells=2, stages=2, num_classes=5, ghost_size=4, l2=l2)


def _masks(space):
    masks = space.full_masks(2)
    masks["block0/ops"] = torch.tensor(
        [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]
    )  # sep3x3 in half the ghosts
    masks["block1/inputs"] = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # 'prev' never
    masks["block1/ops"] = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])  # sep3x3 never
    return masks


def test_l2_gradient_is_zero_on_unused_paths_and_formula_on_used(small_space):
    module = _module(small_space)
    net, lam = module.supernet, module.hparams.l2
    masks = _masks(small_space)
    (0.5 * lam * net.l2_penalty(masks)).backward()
    for cell in net.cells:
        for p in [
            *cell.blocks[1].inputs["prev"].parameters(),
            *cell.blocks[1].ops["sep3x3"].parameters(),
        ]:
            assert p.grad is None or torch.count_nonzero(p.grad) == 0
        half = [p for p in cell.blocks[0].ops["sep3x3"].parameters() if p.dim() > 1]
        for p in half:  # used by 1 of 2 ghost batches: gradient λ · 0.5 · w
            torch.testing.assert_close(p.grad, lam * 0.5 * p.detach())
        for p in cell.out.parameters():
            if p.dim() > 1:  # always used
                torch.testing.assert_close(p.grad, lam * p.detach())


def test_loss_gradient_touches_no_dropped_path(small_space):
    """Cross-entropy and L2 together leave every parameter of a path no ghost batch uses untouched."""
    module = _module(small_space)
    masks = _masks(small_space)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,))
    logits = module.supernet(x, masks, 4)
    loss = torch.nn.functional.cross_entropy(
        logits, y
    ) + 0.5 * module.hparams.l2 * module.supernet.l2_penalty(masks)
    loss.backward()
    for cell in module.supernet.cells:
        for p in [
            *cell.blocks[1].inputs["prev"].parameters(),
            *cell.blocks[1].ops["sep3x3"].parameters(),
        ]:
            assert p.grad is None or torch.count_nonzero(p.grad) == 0
        assert any(
            torch.count_nonzero(p.grad) > 0 for p in cell.blocks[0].ops["sep3x3"].parameters()
        )
