"""The ENAS macro network in final mode: one architecture retrained from scratch, as the authors'
code builds it for `--child_fixed_arc` (`general_child.py`, `_fixed_layer`, whole channels).

Stem Conv3x3 -> BN at C = `filters`; L layers. Layer i runs its op on h_{i-1} (layer 0: on the
stem's output); a conv op is ReLU -> Conv1x1 -> BN -> ReLU -> Conv kxk -> BN. For i >= 1 the outputs
the layer skips to are concatenated with the op's (in skip order, the op's last) and brought back
to C channels by ReLU -> Conv1x1 -> BN, skips or none:

    h_0 = op_0(stem),   h_i = BN(Conv1x1(ReLU([h_j for j in skip_i] ++ op_i(h_{i-1}))))

After each layer of `pool_layers(L, stages)` C doubles and every stored output read later is
replaced by its factorized reduction to the new C (stride 2; the authors' code reduces all of them,
the unread ones too). Head: global average pool -> dropout (the final script: keep 0.5) -> linear
without bias. No auxiliary head and no drop-path: the authors' macro network takes both flags and
ignores them.

The code's quirks, kept by default: the separable ops (sep3x3, sep5x5) are built as full kxk
convolutions, since `_fixed_layer` ignores the separable flag (`sep_as_conv=False`: ReLU ->
depthwise kxk -> pointwise -> BN instead, as the ops' names say). The code has no final-mode pool
ops (the authors' final architectures use none); ours: ReLU -> Conv1x1 -> BN -> 3x3 pool, stride 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import check
from nas.ops import FactorizedReduction, Pool, ReLUConvBN, make_norm
from nas.spaces.base import Architecture
from nas.spaces.enas_macro.layers import KERNELS
from nas.spaces.enas_macro.network import pool_layers, reductions_used, stored_outputs
from nas.spaces.enas_macro.space import EnasMacroSpace
from nas.spaces.enas_micro.cells import SepUnit
from nas.spaces.interface import ChildBase, network_config

POOLS = {"avgpool3x3": "avg", "maxpool3x3": "max"}


class FinalBranch(nn.Module):
    """ReLU -> Conv1x1 -> BN, then ReLU -> Conv kxk -> BN (or the separable unit, or a pool)."""

    def __init__(self, op: str, channels: int, sep_as_conv: bool):
        super().__init__()
        self.conv_in = ReLUConvBN(channels, channels, 1, ghost=False)
        if op in POOLS:
            self.out = Pool(POOLS[op])
        elif op.startswith("sep") and not sep_as_conv:
            self.out = SepUnit(channels, KERNELS[op], ghost=False)
        else:
            self.out = ReLUConvBN(channels, channels, KERNELS[op], ghost=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv_in(x))


class FinalMacroLayer(nn.Module):
    """The op on the layer's input; for i >= 1 its output joined with the skipped outputs."""

    def __init__(
        self, op: str, skips: Sequence[str], channels: int, first: bool, sep_as_conv: bool
    ):
        super().__init__()
        self.skip_names = tuple(skips)
        self.op = FinalBranch(op, channels, sep_as_conv)
        inputs = (len(self.skip_names) + 1) * channels
        self.combine = None if first else ReLUConvBN(inputs, channels, 1, ghost=False)

    def forward(self, h_prev: torch.Tensor, stored: Mapping[str, torch.Tensor]) -> torch.Tensor:
        out = self.op(h_prev)
        if self.combine is None:
            return out
        return self.combine(torch.cat([stored[n] for n in self.skip_names] + [out], dim=1))


class EnasMacroFinalNetwork(ChildBase):
    """The authors' final macro network of `arch` (see the module docstring)."""

    space_class = EnasMacroSpace

    def __init__(
        self,
        arch: Architecture,
        filters: int = 96,
        cells: int = 24,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.5,
        sep_as_conv: bool = True,
    ):
        super().__init__(arch)
        space = self.space
        self.config = network_config(filters, cells, stages, num_classes, in_channels)
        check(
            cells == space.layers,
            f"model.cells={cells} must equal the architecture's {space.layers} layers: the final "
            f"network has one layer per decided layer (the authors' final script: 24)",
        )
        check(
            stages <= cells,
            f"model.stages={stages} must be <= model.cells={cells}: each stage needs a layer",
        )
        check(
            isinstance(dropout, int | float) and 0 <= dropout < 1,
            f"model.dropout={dropout!r} must be a number in [0, 1) (the final script: 0.5)",
        )
        self.dropout = float(dropout)
        self.pool_layers = pool_layers(cells, stages)
        skips = [arch[f"layer{i}/skip"] if i else () for i in range(cells)]
        needed = reductions_used(space, self.pool_layers, lambda i, name: name in skips[i])
        c = filters
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, padding=1, bias=False), make_norm(c, False)
        )
        self.layers = nn.ModuleList()
        self.reduce = nn.ModuleDict()
        for i in range(cells):
            (op,) = arch[f"layer{i}/op"]
            self.layers.append(FinalMacroLayer(op, skips[i], c, i == 0, sep_as_conv))
            if i in self.pool_layers:
                self.reduce[f"after{i}"] = nn.ModuleDict(
                    {
                        name: FactorizedReduction(c, 2 * c, ghost=False)
                        for name in stored_outputs(space, i)
                        if (i, name) in needed
                    }
                )
                c *= 2
        self.store_stem = space.wiring == "authors"
        self.classifier = nn.Linear(c, num_classes, bias=False)  # the authors' FC has no bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        stored = {"stem": h} if self.store_stem else {}
        for i, layer in enumerate(self.layers):
            h = stored[f"layer{i}"] = layer(h, stored)
            if i in self.pool_layers:
                built = self.reduce[f"after{i}"]
                stored = {name: built[name](t) for name, t in stored.items() if name in built}
                h = stored[f"layer{i}"]
        h = F.dropout(h.mean(dim=(2, 3)), self.dropout, self.training)
        return self.classifier(h)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
