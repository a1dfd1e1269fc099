"""The gathered supernet path (each path on the ghost batches that use it) equals the plain dense one."""

from __future__ import annotations

import pytest
import torch

from nas.samplers import PathDropout
from nas.spaces.oneshot_cell import OneShotCellSpace

# float64: the two paths add the same terms in a different order, and batch norm over small ghost
# batches with near-constant inputs amplifies float32 rounding; in float64 they agree to ~1e-12
TOLERANCE = {"rtol": 1e-8, "atol": 1e-10}


def _net(space, **kwargs):
    torch.manual_seed(0)
    net = space.build_supernet(filters=4, num_classes=7, **kwargs).double()
    with torch.no_grad():  # non-trivial BN shifts, so a leak into dropped ghost batches would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net


@pytest.mark.parametrize("rate", [0.1, 0.6])
@pytest.mark.parametrize("batch, ghost", [(24, 4), (22, 4)])
def test_gathered_equals_dense_forward_and_gradients(rate, batch, ghost):
    space = OneShotCellSpace(num_blocks=3, ops=["identity", "sep3x3", "conv1x7_7x1", "avgpool3x3"])
    net = _net(space, cells=3, stages=2)
    gen = torch.Generator().manual_seed(1)
    ghosts = -(-batch // ghost)
    for _trial in range(3):
        masks = PathDropout(rate, "constant").sample(space, ghosts, 1.0, gen)
        x = torch.randn(batch, 3, 8, 8, generator=gen, dtype=torch.float64)
        grads = []
        outs = []
        for dense in (True, False):
            net.zero_grad()
            out = net(x, masks, ghost, dense=dense)
            out.square().sum().backward()
            outs.append(out.detach())
            grads.append(
                {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
            )
        torch.testing.assert_close(outs[1], outs[0], **TOLERANCE)
        assert grads[0].keys() == grads[1].keys()
        for name in grads[0]:
            torch.testing.assert_close(grads[1][name], grads[0][name], **TOLERANCE)


def test_gathered_path_skips_compute_of_unused_ghost_batches():
    """An op used by one ghost batch of four runs on that ghost batch's examples only."""
    space = OneShotCellSpace(num_blocks=1, ops=["identity", "sep3x3"])
    net = _net(space, cells=1, stages=1)
    seen = []
    hook = (
        net.cells[0]
        .blocks[0]
        .ops["sep3x3"]
        .register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    )
    masks = {
        "block0/inputs": torch.ones(4, 2),
        "block0/ops": torch.tensor([[1.0, 0], [1, 0], [1, 1], [1, 0]]),
    }
    net(torch.randn(16, 3, 8, 8, dtype=torch.float64), masks, 4)
    hook.remove()
    assert seen == [4]
