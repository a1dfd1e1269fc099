"""A chain space: `layers` layers, each one op of {conv3, conv1, skip}, on a tiny conv network."""

from __future__ import annotations

import torch
from torch import nn

from nas.ops import Identity, make_norm
from nas.routing import masked_sum
from nas.spaces.base import Decision, SearchSpace
from nas.spaces.interface import SupernetBase, network_config

OPS = ("conv3", "conv1", "skip")


class ToySpace(SearchSpace):
    """Decisions "layer0" .. "layer<L-1>": exactly one op each."""

    name = "toy_chain"

    def __init__(self, layers: int = 2):
        self.layers = layers
        super().__init__([Decision(f"layer{i}", OPS, min_k=1, max_k=1) for i in range(layers)])

    def spec(self) -> dict:
        # `module`: another process imports it to rebuild this space (it lives outside nas/spaces)
        return {"name": self.name, "module": "tests.toy_nas", "layers": self.layers}


class ConvBNReLU(nn.Module):
    def __init__(self, channels: int, kernel: int, ghost: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False)
        self.bn = make_norm(channels, ghost)

    def forward(self, x, ghost=None):
        return torch.relu(self.bn(self.conv(x), ghost))


def _op(name: str, channels: int, ghost: bool) -> nn.Module:
    return Identity() if name == "skip" else ConvBNReLU(channels, int(name[-1]), ghost)


class _Layers:
    def _build(self, layer_ops, ghost, filters, cells, stages, num_classes, in_channels) -> dict:
        config = network_config(filters, cells, stages, num_classes, in_channels)
        self.stem = nn.Conv2d(in_channels, filters, 3, padding=1, bias=False)
        self.stem_bn = make_norm(filters, ghost)
        self.layers = nn.ModuleList(
            nn.ModuleDict({op: _op(op, filters, ghost) for op in ops}) for ops in layer_ops
        )
        self.classifier = nn.Linear(filters, num_classes)
        return config

    def _run_layers(self, x, ghost=None, routed=None, dense=False):
        h = torch.relu(self.stem_bn(self.stem(x), ghost))
        for i, ops in enumerate(self.layers):
            weights = routed[f"layer{i}"] if routed else None
            h = masked_sum(
                tuple(ops),
                lambda name, inp, g, ops=ops: ops[name](inp, g),
                lambda name, h=h: h,
                weights,
                lambda name, ops=ops: getattr(ops[name], "cheap", False),
                dense,
                ghost,
            )
        return self.classifier(h.mean(dim=(2, 3)))


class ToySupernet(SupernetBase, _Layers):
    def __init__(self, space, filters=4, cells=1, stages=1, num_classes=10, in_channels=3):
        super().__init__(space, {})
        layer_ops = [OPS] * space.layers
        self.config = self._build(layer_ops, True, filters, cells, stages, num_classes, in_channels)
        for i, ops in enumerate(self.layers):
            for op, module in ops.items():
                if op != "skip":
                    self.declare_path((f"layer{i}", op), module)


class ToyChild(nn.Module, _Layers):
    def __init__(self, arch, filters=4, cells=1, stages=1, num_classes=10, in_channels=3):
        super().__init__()
        layer_ops = [arch[f"layer{i}"] for i in range(arch.space.layers)]
        self.config = self._build(
            layer_ops, False, filters, cells, stages, num_classes, in_channels
        )
        self.space, self.arch = arch.space, arch

    def forward(self, x, ghost=None):
        return self._run_layers(x, ghost)
