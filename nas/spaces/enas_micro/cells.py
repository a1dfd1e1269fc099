"""The cells of the ENAS micro networks: node n = op_a(node[in_a]) + op_b(node[in_b]), then the output.

As in the authors' code (`micro_child.py`), the separable-convolution weights (and their BN) are
separate per (node, slot a/b, op, input node): module `op_key(n, slot, op, j)`. Pooling and identity
hold no weights and are shared (`STATELESS`). The output is ReLU -> 1x1 conv over the concatenation
of the loose ends -> BN, one 1x1 slice per node. Supernet and child build the same cells
(`network.py`); a child's cell has only its chosen pairs and loose ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nas.errors import check
from nas.ops import FactorizedReduction, Identity, Pool, ReLUConvBN, make_norm
from nas.routing import Ghost, masked_sum
from nas.spaces.enas_micro.space import SLOTS

# the attributes of the factorized reduction's convolutions (state-dict keys)
REDUCTION_NAMES = ("conv1", "conv2")
Pair = tuple[str, int]  # (op, input node) of one slot of one node
CellSpec = tuple[
    dict[tuple[int, str], tuple[Pair, ...]], tuple[int, ...]
]  # pairs per (n, slot), outs
STATELESS = {"avgpool3x3": Pool("avg"), "maxpool3x3": Pool("max"), "identity": Identity()}
KERNELS = {"sep3x3": 3, "sep5x5": 5}


class SepUnit(nn.Module):
    """ReLU -> depthwise k x k (at `stride`) -> pointwise 1x1 -> BN (the authors' order)."""

    def __init__(self, channels: int, kernel: int, ghost: bool, stride: int = 1):
        super().__init__()
        self.depthwise = nn.Conv2d(
            channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False
        )
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = make_norm(channels, ghost)

    def forward(self, x: torch.Tensor, ghost: Ghost = None) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(torch.relu(x))), ghost)


class SepConv(nn.Module):
    """Two `SepUnit`s, the first at `stride`: the authors' separable-convolution op."""

    def __init__(self, channels: int, kernel: int, ghost: bool, stride: int = 1):
        super().__init__()
        self.units = nn.ModuleList(
            SepUnit(channels, kernel, ghost, stride if i == 0 else 1) for i in range(2)
        )

    def forward(self, x: torch.Tensor, ghost: Ghost = None) -> torch.Tensor:
        for unit in self.units:
            x = unit(x, ghost)
        return x


def op_key(n: int, slot: str, op: str, j: int) -> str:
    """Name of the module of `op` in `slot` of node n applied to node j."""
    return f"node{n}_{slot}_{op}_{j}"


class MicroCell(nn.Module):
    """One cell (normal or reduction) at `channels` channels and resolution divisor `div`.

    `inputs`: (channels, divisor) of the two previous layers' outputs. `spec`: the (op, input) pairs
    of every (node, slot), and the nodes whose output slices exist (`outs`). `reduce`: for a reduction
    cell, the factorized reduction of the previous output run before it (trunk).
    """

    def __init__(
        self,
        kind: str,
        inputs: Sequence[tuple[int, int]],
        channels: int,
        div: int,
        spec: CellSpec,
        reduce: nn.Module | None,
        ghost: bool,
    ):
        super().__init__()
        self.kind = kind
        self.reduce = reduce
        self.pairs, self.outs = spec
        self.num_nodes = max(n for n, _ in self.pairs) + 1
        self.calibrate = nn.ModuleDict()
        for i, (c_in, d_in) in enumerate(inputs):
            if d_in != div:
                check(d_in * 2 == div, f"cell input at 1/{d_in} resolution cannot feed 1/{div}")
                self.calibrate[str(i)] = FactorizedReduction(
                    c_in, channels, relu=True, ghost=ghost, names=REDUCTION_NAMES
                )
            elif c_in != channels:
                self.calibrate[str(i)] = ReLUConvBN(c_in, channels, ghost=ghost)
        self.ops = nn.ModuleDict()
        for (n, s), pairs in self.pairs.items():
            for op, j in pairs:
                if op in KERNELS:
                    self.ops[op_key(n, s, op, j)] = SepConv(channels, KERNELS[op], ghost)
        self.out = nn.ModuleDict(
            {str(k): nn.Conv2d(channels, channels, 1, bias=False) for k in self.outs}
        )
        self.out_bn = make_norm(channels, ghost)

    def forward(
        self,
        prev_prev: torch.Tensor,
        prev: torch.Tensor,
        ghost: Ghost = None,
        routed: Mapping | None = None,
        dense: bool = False,
    ) -> torch.Tensor:
        """routed: {(n, slot): PathWeights over pairs, "out": PathWeights over nodes}; None in a child."""
        nodes = []
        for i, x in enumerate((prev_prev, prev)):
            nodes.append(self.calibrate[str(i)](x, ghost) if str(i) in self.calibrate else x)
        for n in range(2, self.num_nodes):
            terms = [self._slot(n, s, nodes, ghost, routed, dense) for s in SLOTS]
            terms = [t for t in terms if t is not None]
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(nodes[1]))
        out = masked_sum(
            self.outs,
            lambda k, x, g: self.out[str(k)](x),
            lambda k: torch.relu(nodes[k]),
            routed["out"] if routed is not None else None,
            lambda k: False,
            dense,
            ghost,
        )
        return self.out_bn(out, ghost)

    def _slot(
        self,
        n: int,
        slot: str,
        nodes: list[torch.Tensor],
        ghost: Ghost,
        routed: Mapping | None,
        dense: bool,
    ) -> torch.Tensor | None:
        """Σ over the slot's (op, input) pairs of weight · op(node[input]); None if none is on."""

        def run(pair: Pair, x: torch.Tensor, g: Ghost) -> torch.Tensor:
            op, j = pair
            module = STATELESS[op] if op in STATELESS else self.ops[op_key(n, slot, op, j)]
            return module(x, g)

        return masked_sum(
            self.pairs[n, slot],
            run,
            lambda pair: nodes[pair[1]],
            routed[n, slot] if routed is not None else None,
            lambda pair: pair[0] in STATELESS,  # pooling and identity: run densely
            dense,
            ghost,
        )
