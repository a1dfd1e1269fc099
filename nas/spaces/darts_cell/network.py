"""DARTS-like cell networks: the supernet holding every op on every edge of both cells, and children.

Two network styles, chosen by the space (`search_space.network`): "darts", DARTS's search network
(`darts_network.py`, the DARTS and GDAS experiments), and "bayesnas", the BayesNAS search network
(this file; every darts_cell checkpoint written before the option existed). Both share the cells'
DAG, the decisions, the path declarations and the node sums (`nodes.py`).

The BayesNAS style. Skeleton (the BayesNAS search network's, with a configurable depth): stem Conv
3x3 -> BN at 3C channels, C = `model.filters`; `model.stages` stages of `model.cells / model.stages`
normal cells at C, 2C, 4C, ... channels and, between consecutive stages, a reduction cell at the
next stage's width. Every cell takes the outputs of the two previous layers (h-1 = "in0", h-2 =
"in1") and first brings each to its width and resolution with BN -> ReLU -> Conv 1x1, of stride 2
where the input has twice the cell's resolution (the h-2 input of the cell after a reduction cell,
and both inputs of a reduction cell, which then runs at stride 1). Head: BN -> ReLU -> global
average pool -> linear.

Inside a cell, node j = Σ over its edges "j<-i" of Σ_k w[edge][k] · op_k(node i), zeros when no op
of its edges is on; the output is the channel concatenation of the intermediate nodes. Ops are
BN-first (the BayesNAS code): sepK = [BN-ReLU-depthwise KxK-pointwise 1x1] x 2, dilK = BN-ReLU-full
KxK conv of dilation 2-Conv 1x1, 3x3 max / average pooling of stride 1 (average over valid pixels)
and identity. Every cell has its own op modules; all cells of a type share the decisions.

Supernet and child name their submodules identically, so a child's state_dict is a subset of the
supernet's and `extract(arch, copy_weights=True)` is a copy. Shapes: images [N, C, H, W];
weights[decision] is [G, k] with G = number of ghost batches (or 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nas.errors import check
from nas.ops import BNReLUConv, Identity, Pool, SepConvPair, make_norm
from nas.routing import Ghost, PathWeights
from nas.spaces.base import Architecture
from nas.spaces.darts_cell.darts_network import DartsSearchLayers
from nas.spaces.darts_cell.nodes import run_nodes
from nas.spaces.darts_cell.space import CELLS, INPUTS, DartsCellSpace, parse_edge
from nas.spaces.interface import ChildBase, SupernetBase, network_config

CellOps = Mapping[str, Sequence[str]]  # edge -> the ops built on it


class DilConv(nn.Module):
    """BN -> ReLU -> full K x K conv of dilation 2 -> Conv 1x1 (the BayesNAS code's dilated op)."""

    def __init__(self, channels: int, kernel: int, ghost: bool):
        super().__init__()
        self.bn = make_norm(channels, ghost)
        self.conv = nn.Conv2d(
            channels, channels, kernel, padding=kernel - 1, dilation=2, bias=False
        )
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor, ghost: Ghost = None) -> torch.Tensor:
        return self.pointwise(self.conv(torch.relu(self.bn(x, ghost))))


def make_op(name: str, channels: int, ghost: bool) -> nn.Module:
    """The module of op `name` at `channels` channels."""
    if name == "identity":
        return Identity()
    if name in ("maxpool3x3", "avgpool3x3"):
        return Pool(name[:3])
    kind, kernel = name[:3], int(name[3])
    return (
        SepConvPair(channels, kernel, ghost) if kind == "sep" else DilConv(channels, kernel, ghost)
    )


class DartsCell(nn.Module):
    """One cell (normal or reduction) at `channels` channels.

    `inputs`: the (channels, resolution divisor) of h-1 and h-2; `div`: the cell's divisor.
    `edge_ops`: the ops built on every edge of the cell's DAG (an edge without ops has no module).
    """

    def __init__(
        self,
        kind: str,
        inputs: Sequence[tuple[int, int]],
        channels: int,
        div: int,
        nodes: int,
        edge_ops: CellOps,
        ghost: bool,
    ):
        super().__init__()
        self.kind, self.nodes = kind, nodes
        self.preprocess = nn.ModuleList()
        for c_in, d_in in inputs:
            check(div in (d_in, 2 * d_in), f"cell input at 1/{d_in} resolution cannot feed 1/{div}")
            self.preprocess.append(BNReLUConv(c_in, channels, 1, stride=div // d_in, ghost=ghost))
        self.edges = nn.ModuleDict()
        for edge, ops in edge_ops.items():
            self.edges[edge] = nn.ModuleDict({op: make_op(op, channels, ghost) for op in ops})
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
        inputs = zip(INPUTS, self.preprocess, (h1, h2), strict=True)
        states = {name: p(h, ghost) for name, p, h in inputs}
        return run_nodes(
            self, states, lambda: torch.zeros_like(states["in0"]), ghost, routed, dense
        )


class _DartsLayers(DartsSearchLayers):
    """Stem, cells and head of the space's network style: built and run alike by supernet and
    child (DARTS's search network: `darts_network.py`)."""

    def _build_layers(
        self,
        cell_ops: Mapping[str, CellOps],
        nodes: int,
        ghost: bool,
        filters: int,
        cells: int,
        stages: int,
        num_classes: int,
        in_channels: int,
    ) -> dict:
        config = network_config(filters, cells, stages, num_classes, in_channels)
        check(
            cells % stages == 0,
            f"model.cells={cells} must be a multiple of model.stages={stages}: the network puts the "
            f"same number of normal cells in every stage, with a reduction cell between stages "
            f"(the DARTS and BayesNAS search networks: cells=6, stages=3)",
        )
        self.style = self.space.network  # set by SupernetBase / ChildBase before the layers
        if self.style == "darts":
            self._build_darts_layers(
                cell_ops, nodes, ghost, filters, cells, stages, num_classes, in_channels
            )
            return config
        self.stem = nn.Conv2d(in_channels, 3 * filters, 3, padding=1, bias=False)
        self.stem_bn = make_norm(3 * filters, ghost)
        self.cells = nn.ModuleList()
        p = pp = (3 * filters, 1)  # (channels, resolution divisor) of h-1 and h-2
        c, div = filters, 1
        for stage in range(stages):
            kinds = ["normal"] * (cells // stages)
            if stage:
                c, div = 2 * c, 2 * div
                kinds.insert(0, "reduce")
            for kind in kinds:
                self.cells.append(DartsCell(kind, [p, pp], c, div, nodes, cell_ops[kind], ghost))
                pp, p = p, (nodes * c, div)
        self.final_bn = make_norm(p[0], ghost)
        self.classifier = nn.Linear(p[0], num_classes)
        return config

    def _run_layers(
        self,
        x: torch.Tensor,
        ghost: Ghost = None,
        routed: Mapping[str, PathWeights] | None = None,
        dense: bool = False,
    ) -> torch.Tensor:
        if self.style == "darts":
            return self._run_darts_layers(x, ghost, routed, dense)
        h1 = h2 = self.stem_bn(self.stem(x), ghost)
        for cell in self.cells:
            h1, h2 = cell(h1, h2, ghost, routed, dense), h1
        h = torch.relu(self.final_bn(h1, ghost))
        return self.classifier(h.mean(dim=(2, 3)))  # global average pool: [N, C] -> logits


class DartsCellSupernet(SupernetBase, _DartsLayers):
    """Every op on every edge of both cell types, in every cell.

    Paths: `("{cell}/{edge}", op)` for every op with weights in every cell of that type (sep, dil;
    in the DARTS style also identity at stride 2, a FactorizedReduce); pooling and identity hold
    none. The trunk: stem, the cells' input preprocessing, final BN (BayesNAS style) and classifier.
    """

    def __init__(
        self,
        space: DartsCellSpace,
        filters: int = 16,
        cells: int = 6,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        check(
            isinstance(space, DartsCellSpace),
            f"DartsCellSupernet needs the darts_cell space, got {getattr(space, 'name', space)!r}",
        )
        super().__init__(space, {})
        cell_ops = {cell: {e: space.ops for e in space.edges[cell]} for cell in CELLS}
        self.config = self._build_layers(
            cell_ops, space.num_nodes, True, filters, cells, stages, num_classes, in_channels
        )
        seen = dict.fromkeys(CELLS, 0)
        for cell in self.cells:
            cell.copy, seen[cell.kind] = seen[cell.kind], seen[cell.kind] + 1  # per-cell weights
            for edge, ops in cell.edges.items():
                for op, module in ops.items():
                    if any(True for _ in module.parameters()):
                        self.declare_path((f"{cell.kind}/{edge}", op), module)
        self._cells_of_kind = seen

    def cells_per_decision(self) -> dict[str, int]:
        """Every cell of a type is weighed apart: decision "{cell}/{edge}" has one per cell."""
        return {
            f"{cell}/{edge}": max(self._cells_of_kind[cell], 1)  # a type without cells: 1, unread
            for cell in CELLS
            for edge in self.space.edges[cell]
        }


class DartsCellChild(ChildBase, _DartsLayers):
    """The network of one architecture with ordinary batch norm; only its chosen ops exist (an edge
    with no op has no module)."""

    space_class = DartsCellSpace

    def __init__(
        self,
        arch: Architecture,
        filters: int = 16,
        cells: int = 6,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__(arch)
        space = self.space
        cell_ops = {
            cell: {e: arch[f"{cell}/{e}"] for e in space.edges[cell] if arch[f"{cell}/{e}"]}
            for cell in CELLS
        }
        self.config = self._build_layers(
            cell_ops, space.num_nodes, False, filters, cells, stages, num_classes, in_channels
        )
