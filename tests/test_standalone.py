"""StandaloneModule: the stand-alone network of one architecture."""

from __future__ import annotations

import random

import torch

from nas.modules import StandaloneModule


def test_channels_last_computes_the_same_function(small_space):
    arch = small_space.sample(random.Random(0))
    nets = []
    for layout in (False, True):
        torch.manual_seed(0)
        nets.append(
            StandaloneModule(arch, filters=4, cells=2, stages=2, channels_last=layout).eval()
        )
    x = torch.randn(6, 3, 8, 8)
    torch.testing.assert_close(nets[1](x), nets[0](x), rtol=1e-5, atol=1e-6)
    assert nets[1].net.stem.weight.is_contiguous(memory_format=torch.channels_last)


def test_parameter_count_is_the_child_network(small_space):
    arch = small_space.sample(random.Random(1))
    module = StandaloneModule(arch, filters=4, cells=2, stages=2)
    child = small_space.build_child(arch, filters=4, cells=2, stages=2)
    assert module.num_params == sum(p.numel() for p in child.parameters())
    assert (
        module.hparams.arch_id == arch.id
        and module.hparams.arch["choices"] == arch.to_dict()["choices"]
    )
