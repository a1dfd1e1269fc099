"""DARTS's own search-network ops (Liu et al., ICLR 2019; the DARTS code's cnn/operations.py and
cnn/model_search.py), ghost-batch-norm aware, for `search_space.network=darts`.

ReLU first, batch norm last, and in the search network every batch norm of a cell is `affine=False`
(only the stem's has a scale and shift):
- sepK: [ReLU -> depthwise KxK -> pointwise 1x1 -> BN] x 2, the first depthwise conv at the op's
  stride (DARTS's SepConv);
- dilK: ReLU -> depthwise KxK of dilation 2 -> pointwise 1x1 -> BN (DilConv);
- 3x3 max / average pooling (average over valid pixels) -> BN (MixedOp wraps every pool in an
  affine-free BN);
- identity, or FactorizedReduce at stride 2 (ReLU -> two stride-2 1x1 convs, the second one pixel
  offset, concatenated -> BN).
The cell preprocessing is ReLUConvBN (ReLU -> 1x1 conv -> BN), or FactorizedReduce for h-2 when it
has twice the resolution of h-1. `affine=True` gives the same ops with affine batch norm, as the
DARTS evaluation network builds them.

Every module here is called as `module(x, ghost)`: `ghost` examples per ghost batch, or None for
ordinary batch norm. Supernet norms (`ghost=True` at build time) never track running statistics;
children's do, as `nas.ops.make_norm`.
"""

from __future__ import annotations

import torch
from torch import nn

from nas.ghost_bn import GhostBatchNorm
from nas.ops import FactorizedReduction, Identity
from nas.routing import Ghost

POOLS = {"maxpool3x3": "max", "avgpool3x3": "avg"}


def darts_norm(channels: int, ghost: bool, affine: bool = False) -> GhostBatchNorm:
    """A batch norm of DARTS's search cells: affine-free unless `affine`; statistics as `make_norm`."""
    return GhostBatchNorm(channels, affine=affine, track_running_stats=not ghost)


class GhostSequential(nn.Sequential):
    """nn.Sequential whose batch norms (and factorized reductions) get the ghost batch size."""

    def forward(self, x: torch.Tensor, ghost: Ghost = None) -> torch.Tensor:  # type: ignore[override]
        for module in self:
            x = (
                module(x, ghost)
                if isinstance(module, GhostBatchNorm | FactorizedReduction)
                else module(x)
            )
        return x


def relu_conv_bn(c_in: int, c_out: int, ghost: bool, affine: bool = False) -> GhostSequential:
    """DARTS's ReLUConvBN with a 1x1 convolution (the cells' input preprocessing)."""
    return GhostSequential(
        nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False), darts_norm(c_out, ghost, affine)
    )


def _relu_depthwise_pointwise_bn(c, kernel, stride, dilation, ghost, affine) -> list[nn.Module]:
    padding = dilation * (kernel - 1) // 2  # DARTS: 1, 2 (sep 3, 5) and 2, 4 (dil 3, 5)
    return [
        nn.ReLU(),
        nn.Conv2d(c, c, kernel, stride, padding, dilation=dilation, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        darts_norm(c, ghost, affine),
    ]


def sep_conv(
    c: int, kernel: int, stride: int, ghost: bool, affine: bool = False
) -> GhostSequential:
    """DARTS's SepConv: two ReLU-depthwise-pointwise-BN units, the first at `stride`."""
    return GhostSequential(
        *_relu_depthwise_pointwise_bn(c, kernel, stride, 1, ghost, affine),
        *_relu_depthwise_pointwise_bn(c, kernel, 1, 1, ghost, affine),
    )


def dil_conv(
    c: int, kernel: int, stride: int, ghost: bool, affine: bool = False
) -> GhostSequential:
    """DARTS's DilConv: ReLU -> depthwise KxK of dilation 2 -> pointwise 1x1 -> BN."""
    return GhostSequential(*_relu_depthwise_pointwise_bn(c, kernel, stride, 2, ghost, affine))


class PoolBN(GhostSequential):
    """3x3 pooling at `stride` then an affine-free BN (DARTS's MixedOp around every pool)."""

    cheap = True  # no weights: run on the whole batch rather than gathering ghost batches

    def __init__(self, kind: str, channels: int, stride: int, ghost: bool):
        pool = (
            nn.MaxPool2d(3, stride, 1)
            if kind == "max"
            else nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        )
        super().__init__(pool, darts_norm(channels, ghost))


class FactorizedReduce(FactorizedReduction):
    """DARTS's FactorizedReduce (ReLU first, convs conv_1 / conv_2, output padded on odd sizes),
    with DARTS's search-network BN: affine-free unless `affine`."""

    def __init__(self, c_in: int, c_out: int, ghost: bool, affine: bool = False):
        super().__init__(
            c_in, c_out, relu=True, ghost=ghost, names=("conv_1", "conv_2"), pad_output=True
        )
        self.bn = darts_norm(c_out, ghost, affine)  # replaces the shared unit's affine BN


def make_darts_op(name: str, channels: int, stride: int, ghost: bool) -> nn.Module:
    """DARTS's search-network module of our op `name` (DARTS_OPS in genotype.py) at `stride`."""
    if name == "identity":
        return Identity() if stride == 1 else FactorizedReduce(channels, channels, ghost)
    if name in POOLS:
        return PoolBN(POOLS[name], channels, stride, ghost)
    kind, kernel = name[:3], int(name[3])
    build = sep_conv if kind == "sep" else dil_conv
    return build(channels, kernel, stride, ghost)
