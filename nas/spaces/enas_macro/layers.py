"""The layers of the ENAS macro networks: the six ops (conv and pool branches) and one searched layer.

Layer i of the macro space computes h_i = BN(Σ_ops w_o · op_o(h_{i-1}) + Σ_skips w_j · h_j) (the
search-mode wiring of the ENAS code, `general_child.py`); every op starts with a 1x1 conv -> BN ->
ReLU. Supernet and child build the same modules (`network.py`); a child has only its chosen op.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nas.ops import Pool, make_norm
from nas.routing import Ghost, PathWeights, masked_sum

KERNELS = {"conv3x3": 3, "conv5x5": 5, "sep3x3": 3, "sep5x5": 5}


class ConvBranch(nn.Module):
    """1x1 conv -> BN -> ReLU -> k x k conv (or depthwise k x k then pointwise 1x1) -> BN -> ReLU."""

    def __init__(self, channels: int, kernel: int, separable: bool, ghost: bool):
        super().__init__()
        self.conv_in = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn_in = make_norm(channels, ghost)
        pad = kernel // 2
        if separable:
            self.conv = nn.Sequential(
                nn.Conv2d(channels, channels, kernel, padding=pad, groups=channels, bias=False),
                nn.Conv2d(channels, channels, 1, bias=False),
            )
        else:
            self.conv = nn.Conv2d(channels, channels, kernel, padding=pad, bias=False)
        self.bn = make_norm(channels, ghost)

    def forward(self, x: torch.Tensor, ghost: Ghost = None) -> torch.Tensor:
        x = torch.relu(self.bn_in(self.conv_in(x), ghost))
        return torch.relu(self.bn(self.conv(x), ghost))


class PoolBranch(nn.Module):
    """1x1 conv -> BN -> ReLU -> 3x3 pool, stride 1 (average over the valid pixels only)."""

    def __init__(self, channels: int, kind: str, ghost: bool):
        super().__init__()
        self.conv_in = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn_in = make_norm(channels, ghost)
        self.pool = Pool(kind)

    def forward(self, x: torch.Tensor, ghost: Ghost = None) -> torch.Tensor:
        return self.pool(torch.relu(self.bn_in(self.conv_in(x), ghost)))


def make_op(name: str, channels: int, ghost: bool) -> nn.Module:
    """The module of op `name` at `channels` channels."""
    if name in KERNELS:
        return ConvBranch(channels, KERNELS[name], name.startswith("sep"), ghost)
    return PoolBranch(channels, {"avgpool3x3": "avg", "maxpool3x3": "max"}[name], ghost)


class MacroLayer(nn.Module):
    """h = BN(Σ_ops w_o · op_o(h_prev) + Σ_skips w_j · h_j); the BN is always on (trunk).

    Skips hold no parameters; in the supernet their weights multiply h_j (identity paths, run
    densely). A row with no op and no skip on gets BN(0). `norm=False` (layer 0 of the authors'
    wiring, which has no skips) leaves the BN out: h = Σ_ops w_o · op_o(h_prev).
    """

    def __init__(
        self,
        channels: int,
        ops: Sequence[str],
        skips: Sequence[str],
        ghost: bool,
        norm: bool = True,
    ) -> None:
        super().__init__()
        self.op_names, self.skip_names = tuple(ops), tuple(skips)
        self.ops = nn.ModuleDict({op: make_op(op, channels, ghost) for op in ops})
        self.bn = make_norm(channels, ghost) if norm else None

    def forward(
        self,
        h_prev: torch.Tensor,
        stored: Mapping[str, torch.Tensor],
        ghost: Ghost = None,
        op_weights: PathWeights | None = None,
        skip_weights: PathWeights | None = None,
        dense: bool = False,
    ) -> torch.Tensor:
        out = masked_sum(
            self.op_names,
            lambda n, x, g: self.ops[n](x, g),
            lambda n: h_prev,
            op_weights,
            lambda n: False,  # every op has a 1x1 conv and BN: gather the ghost batches using it
            dense,
            ghost,
        )
        skip = masked_sum(
            self.skip_names,
            lambda n, x, g: x,
            stored.__getitem__,
            skip_weights,
            lambda n: True,  # identity: cheaper dense than gathered
            dense,
            ghost,
        )
        terms = [t for t in (out, skip) if t is not None]
        total = sum(terms[1:], terms[0]) if terms else torch.zeros_like(h_prev)
        return self.bn(total, ghost) if self.bn is not None else total
