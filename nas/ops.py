"""The op vocabulary: name -> constructor(channels). Convolutions use BN-ReLU-Conv order.

Every module here is called as `module(x, ghost_size)`; `ghost_size=None` means ordinary batch norm.
Besides `OPS`, the units several spaces share: ReLU-Conv-BN (NAS-Bench-201, ENAS micro) and the
factorized reduction (ENAS macro and micro, DARTS's evaluation network).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nas.ghost_bn import GhostBatchNorm


def make_norm(channels: int, ghost: bool) -> GhostBatchNorm:
    """Supernet norms never track running statistics (batch statistics always); child norms do."""
    return GhostBatchNorm(channels, track_running_stats=not ghost)


class BNReLUConv(nn.Module):
    """BN -> ReLU -> Conv2d (no bias: the next BN has one)."""

    def __init__(self, c_in: int, c_out: int, kernel=1, stride=1, padding=0, groups=1, ghost=True):
        super().__init__()
        self.bn = make_norm(c_in, ghost)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, groups=groups, bias=False)

    def forward(self, x: torch.Tensor, ghost_size: int | None = None) -> torch.Tensor:
        return self.conv(torch.relu(self.bn(x, ghost_size)))


class ReLUConvBN(nn.Module):
    """ReLU -> Conv2d (no bias: the BN has one, padding kernel // 2) -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, ghost=True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
        self.bn = make_norm(c_out, ghost)

    def forward(self, x: torch.Tensor, ghost_size: int | None = None) -> torch.Tensor:
        return self.bn(self.conv(torch.relu(x)), ghost_size)


class FactorizedReduction(nn.Module):
    """Halves the resolution without dropping pixels: [Conv1x1/2(x), Conv1x1/2(x shifted)] -> BN.

    Two stride-2 1x1 convolutions (no bias), the first on x, the second on x[:, :, 1:, 1:], make
    c_out // 2 and the remaining channels; their concatenation is batch-normalised. ENAS pads the
    shifted input by a zero row and column at the bottom and right; DARTS (`pad_output`) pads the
    second output instead where it comes out smaller (odd sizes): the same numbers up to rounding.
    `c_out` defaults to `c_in`; `relu` puts a ReLU first (ENAS micro's cell inputs, DARTS).
    `names`: the attributes of the two convolutions, so each space keeps its state-dict keys (ENAS
    macro conv_a / conv_b, ENAS micro conv1 / conv2, DARTS conv_1 / conv_2).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int | None = None,
        *,
        relu: bool = False,
        ghost: bool = True,
        names: tuple[str, str] = ("conv_a", "conv_b"),
        pad_output: bool = False,
    ):
        super().__init__()
        c_out = c_in if c_out is None else c_out
        self.relu, self.names, self.pad_output = relu, tuple(names), pad_output
        first, second = self.names
        self.add_module(first, nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False))
        self.add_module(second, nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False))
        self.bn = make_norm(c_out, ghost)

    def forward(self, x: torch.Tensor, ghost_size: int | None = None) -> torch.Tensor:
        if self.relu:
            x = torch.relu(x)
        first, second = (getattr(self, name) for name in self.names)
        a = first(x)
        if self.pad_output:
            b = second(x[:, :, 1:, 1:])
            if b.shape[-2:] != a.shape[-2:]:
                b = F.pad(b, (0, a.shape[-1] - b.shape[-1], 0, a.shape[-2] - b.shape[-2]))
        else:
            b = second(F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1)))
        return self.bn(torch.cat([a, b], dim=1), ghost_size)


class SepConvPair(nn.Module):
    """A pair of depthwise-separable k x k convolutions, each BN-ReLU-depthwise-pointwise."""

    def __init__(self, channels: int, kernel: int, ghost: bool = True):
        super().__init__()
        pad = kernel // 2
        self.units = nn.ModuleList()
        for _ in range(2):
            self.units.append(
                BNReLUConv(channels, channels, kernel, padding=pad, groups=channels, ghost=ghost)
            )
            self.units.append(_Pointwise(channels))

    def forward(self, x: torch.Tensor, ghost_size: int | None = None) -> torch.Tensor:
        for unit in self.units:
            x = unit(x, ghost_size)
        return x


class _Pointwise(nn.Conv2d):
    """1x1 convolution directly after a depthwise one (no BN-ReLU between, as in separable convs)."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor, ghost_size: int | None = None) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)


class Conv1x7Then7x1(nn.Module):
    """A 1x7 convolution followed by a 7x1 convolution (each BN-ReLU-Conv)."""

    def __init__(self, channels: int, ghost: bool = True):
        super().__init__()
        self.conv1x7 = BNReLUConv(channels, channels, (1, 7), padding=(0, 3), ghost=ghost)
        self.conv7x1 = BNReLUConv(channels, channels, (7, 1), padding=(3, 0), ghost=ghost)

    def forward(self, x: torch.Tensor, ghost_size: int | None = None) -> torch.Tensor:
        return self.conv7x1(self.conv1x7(x, ghost_size), ghost_size)


class Pool(nn.Module):
    """3x3 max or average pooling, stride 1 (average over valid pixels only)."""

    cheap = True  # cheaper to run on the whole batch than to gather the ghost batches using it

    def __init__(self, kind: str):
        super().__init__()
        self.pool = (
            nn.MaxPool2d(3, 1, 1)
            if kind == "max"
            else nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        )

    def forward(self, x: torch.Tensor, ghost_size: int | None = None) -> torch.Tensor:
        return self.pool(x)


class Identity(nn.Module):
    cheap = True

    def forward(self, x: torch.Tensor, ghost_size: int | None = None) -> torch.Tensor:
        return x


OPS: dict[str, Callable[[int, bool], nn.Module]] = {
    "identity": lambda c, ghost: Identity(),
    "sep3x3": lambda c, ghost: SepConvPair(c, 3, ghost),
    "sep5x5": lambda c, ghost: SepConvPair(c, 5, ghost),
    "sep7x7": lambda c, ghost: SepConvPair(c, 7, ghost),
    "conv1x7_7x1": lambda c, ghost: Conv1x7Then7x1(c, ghost),
    "maxpool3x3": lambda c, ghost: Pool("max"),
    "avgpool3x3": lambda c, ghost: Pool("avg"),
}
