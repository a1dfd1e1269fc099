"""DARTS's search network (`search_space.network=darts`; Liu et al., ICLR 2019, the DARTS code's
cnn/model_search.py `Network` and `Cell`) on the darts_cell DAG, for supernet and child alike.

Stem Conv 3x3 -> BN (affine) at 3C channels, C = `model.filters`; `model.stages` stages of
`model.cells / model.stages` normal cells at C, 2C, 4C, ... channels and, between stages, a
reduction cell at the next stage's width (DARTS's `Network(16, 10, 8)` is cells=6, stages=3: its 8
layers, reductions at layers 2 and 5, C = 16). Head: global average pool -> linear (no BN or ReLU
before it).

A cell brings its inputs to its width at the resolution of h-1 ("in0"): ReLUConvBN 1x1 for h-1, and
for h-2 ("in1") ReLUConvBN, or FactorizedReduce when h-2 has twice h-1's resolution (the cell after
a reduction cell). A reduction cell halves the resolution in its ops: those on edges reading in0 or
in1 have stride 2 (identity is then FactorizedReduce), the others stride 1. Ops: `darts_ops.py`
(every BN of a cell affine-free). Nodes sum their edges' ops (`nodes.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nas.errors import check
from nas.routing import Ghost, PathWeights
from nas.spaces.darts_cell.dag import INPUTS, parse_edge
from nas.spaces.darts_cell.darts_ops import (
    FactorizedReduce,
    GhostSequential,
    darts_norm,
    make_darts_op,
    relu_conv_bn,
)
from nas.spaces.darts_cell.nodes import run_nodes

STEM_MULTIPLIER = 3  # DARTS: the stem has 3C channels


class DartsSearchCell(nn.Module):
    """One cell of DARTS's search network at `channels` channels.

    `inputs`: the (channels, resolution divisor) of h-1 and h-2; `edge_ops`: the ops built on every
    edge (an edge without ops has no module).
    """

    def __init__(
        self,
        kind: str,
        inputs: Sequence[tuple[int, int]],
        channels: int,
        nodes: int,
        edge_ops: Mapping[str, Sequence[str]],
        ghost: bool,
    ):
        super().__init__()
        (c1, d1), (c2, d2) = inputs
        check(d2 in (d1, d1 // 2), f"cell input h-2 at 1/{d2} resolution cannot feed h-1's 1/{d1}")
        self.kind, self.nodes = kind, nodes
        self.stride = 2 if kind == "reduce" else 1
        h2 = (
            relu_conv_bn(c2, channels, ghost) if d2 == d1 else FactorizedReduce(c2, channels, ghost)
        )
        self.preprocess = nn.ModuleList([relu_conv_bn(c1, channels, ghost), h2])  # in0, in1
        self.edges = nn.ModuleDict()
        for edge, ops in edge_ops.items():
            stride = self.stride if parse_edge(edge)[0] in INPUTS else 1
            self.edges[edge] = nn.ModuleDict(
                {op: make_darts_op(op, channels, stride, ghost) for op in ops}
            )
        self.incoming = {j: [e for e in edge_ops if parse_edge(e)[1] == j] for j in range(nodes)}

    def forward(
        self,
        h1: torch.Tensor,
        h2: torch.Tensor,
        ghost: Ghost = None,
        routed: Mapping[str, PathWeights] | None = None,
        dense: bool = False,
    ) -> torch.Tensor:
        """h1, h2: the outputs of the previous two layers; routed: edge -> PathWeights (supernet)."""
        states = {"in0": self.preprocess[0](h1, ghost), "in1": self.preprocess[1](h2, ghost)}
        n, c, h, w = states["in0"].shape
        s = self.stride  # a dead node has the cell's output resolution

        def dead() -> torch.Tensor:
            return states["in0"].new_zeros(n, c, (h - 1) // s + 1, (w - 1) // s + 1)

        return run_nodes(self, states, dead, ghost, routed, dense)


class DartsSearchLayers:
    """Stem, cells and head of DARTS's search network, built and run alike by supernet and child."""

    def _build_darts_layers(
        self,
        cell_ops: Mapping[str, Mapping[str, Sequence[str]]],
        nodes: int,
        ghost: bool,
        filters: int,
        cells: int,
        stages: int,
        num_classes: int,
        in_channels: int,
    ) -> None:
        width = STEM_MULTIPLIER * filters
        self.stem = GhostSequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            darts_norm(width, ghost, affine=True),  # the stem's BN is DARTS's only affine one
        )
        self.cells = nn.ModuleList()
        p = pp = (width, 1)  # (channels, resolution divisor) of h-1 and h-2
        c, div = filters, 1
        for stage in range(stages):
            kinds = ["normal"] * (cells // stages)
            if stage:
                c, div = 2 * c, 2 * div
                kinds.insert(0, "reduce")
            for kind in kinds:
                self.cells.append(DartsSearchCell(kind, [p, pp], c, nodes, cell_ops[kind], ghost))
                pp, p = p, (nodes * c, div)
        self.classifier = nn.Linear(p[0], num_classes)

    def _run_darts_layers(
        self,
        x: torch.Tensor,
        ghost: Ghost = None,
        routed: Mapping[str, PathWeights] | None = None,
        dense: bool = False,
    ) -> torch.Tensor:
        h1 = h2 = self.stem(x, ghost)
        for cell in self.cells:
            h1, h2 = cell(h1, h2, ghost, routed, dense), h1
        return self.classifier(h1.mean(dim=(2, 3)))  # global average pool: [N, C] -> logits
