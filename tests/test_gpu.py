"""Checks that need a CUDA device (skipped without one): the device-only code paths."""

from __future__ import annotations

import pytest
import torch

from nas.samplers import PathDropout
from nas.spaces.oneshot_cell import OneShotCellSpace

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_gathered_path_on_cuda_equals_the_cpu_dense_reference():
    """Pinned one-copy index transfer and gather/scatter on the device give the plain masked sum."""
    space = OneShotCellSpace(num_blocks=3, ops=["identity", "sep3x3", "conv1x7_7x1", "maxpool3x3"])
    torch.manual_seed(0)
    net = space.build_supernet(filters=4, cells=3, stages=2, num_classes=7).double()
    masks = PathDropout(0.5, "constant").sample(space, 6, 1.0, torch.Generator().manual_seed(1))
    x = torch.randn(22, 3, 8, 8, dtype=torch.float64)
    reference = net(x, masks, 4, dense=True)
    on_device = net.cuda()(x.cuda(), masks, 4)
    torch.testing.assert_close(on_device.cpu(), reference, rtol=1e-8, atol=1e-10)


def test_nan_loss_on_cuda_stops_the_run(compose_train, capsys):
    """On CUDA the finiteness flag is read a step or two late, without a host sync per step."""
    import train

    cfg = compose_train(
        "experiment=smoke",
        "hardware=gpu",
        "trainer.precision=32-true",
        "model.lr=1e12",
        "callbacks.last.every_n_train_steps=1",
    )
    with pytest.raises(SystemExit) as exit_info:
        train.train(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "the training loss is not finite at step" in err or "the weights are not finite" in err


def test_enas_trains_and_derives_on_cuda(compose_train, tmp_path):
    """Controller sampling with a CPU generator, rewards and REINFORCE with the module on the GPU."""
    import random

    import train
    from nas.methods.enas.strategy import ControllerStrategy
    from nas.search.checkpoint import load_supernet_module

    cfg = compose_train("experiment=smoke_enas", "hardware=gpu", "trainer.precision=32-true")
    train.train(cfg)
    module = load_supernet_module(tmp_path / "checkpoints" / "last.ckpt", torch.device("cuda"))
    assert next(module.controller.parameters()).is_cuda
    strategy = ControllerStrategy(module.space, random.Random(0), module=module)
    assert strategy.ask().space.name == "enas_macro"
