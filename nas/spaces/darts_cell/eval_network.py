"""DARTS's evaluation network (`NetworkCIFAR` of the DARTS code, Liu et al., ICLR 2019) for one
darts_cell architecture, for stand-alone retraining.

Stem Conv 3x3 -> BN at 3C channels; `cells` cells, the ones at 1/3 and 2/3 of the depth reduction
cells (C doubles); global average pool -> linear. Each cell takes h-1 ("in0") and h-2 ("in1"),
brings them to C channels with ReLU -> Conv 1x1 -> BN (FactorizedReduce for h-2 after a reduction
cell), and node j sums the ops on its incoming edges; the cell outputs the concatenation of its
intermediate nodes. Ops are ReLU-first (DARTS's operations.py): sepK = [ReLU -> depthwise KxK ->
pointwise 1x1 -> BN] x 2, dilK = ReLU -> depthwise KxK of dilation 2 -> pointwise 1x1 -> BN, 3x3
max / average pooling (no BN, average over valid pixels), identity (FactorizedReduce at stride 2).
In a reduction cell, ops reading the cell inputs have stride 2. These are the ops of DARTS's search
network (`darts_ops.py`, `search_space.network=darts`) with the same kernels, strides, dilations,
groups and channels, as in the DARTS code: only their BN is affine here (affine-free in the search
network) and the search network's BN after a pool is absent.

Drop-path (training only): every op output but an identity's is zeroed per example with
probability `drop_prob` (and scaled by 1 / (1 - drop_prob)); the training module sets `drop_prob`
each epoch (DARTS: drop_path_prob * epoch / epochs). Auxiliary head (DARTS's AuxiliaryHeadCIFAR)
after the cell at 2/3 depth. `forward` returns logits, and (logits, aux logits) in training when
`auxiliary`.

Unlike the DARTS code, any architecture of the space is accepted (any number of ops per edge, any
edges); a node without an op is zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from nas.errors import check
from nas.ops import FactorizedReduction
from nas.spaces.base import Architecture
from nas.spaces.darts_cell.space import CELLS, INPUTS, DartsCellSpace, parse_edge
from nas.spaces.interface import ChildBase


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class DilConv(nn.Sequential):
    def __init__(self, c: int, kernel: int, stride: int, padding: int, dilation: int):
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c, c, kernel, stride, padding, dilation=dilation, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )


class SepConv(nn.Sequential):
    def __init__(self, c: int, kernel: int, stride: int, padding: int):
        super().__init__(
            DilConv(c, kernel, stride, padding, 1),
            DilConv(c, kernel, 1, padding, 1),
        )


def factorized_reduce(c_in: int, c_out: int) -> FactorizedReduction:
    """DARTS's FactorizedReduce: ReLU -> two stride-2 Conv 1x1 (the second offset by one pixel)
    concatenated -> BN, named and computed as in the DARTS code."""
    return FactorizedReduction(
        c_in, c_out, relu=True, ghost=False, names=("conv_1", "conv_2"), pad_output=True
    )


def make_eval_op(name: str, c: int, stride: int) -> nn.Module:
    """DARTS's module of our op `name` at `c` channels and `stride`."""
    if name == "identity":
        return nn.Identity() if stride == 1 else factorized_reduce(c, c)
    if name == "maxpool3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avgpool3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    kind, kernel = name[:3], int(name[3])
    if kind == "sep":
        return SepConv(c, kernel, stride, kernel // 2)
    return DilConv(c, kernel, stride, kernel - 1, 2)


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Each example's `x` zeroed with probability `drop_prob`, the rest scaled by 1/(1-drop_prob)."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class EvalCell(nn.Module):
    """One cell of `kind` (normal / reduce) at `c` channels; `edge_ops`: edge -> its ops."""

    def __init__(
        self,
        kind: str,
        edge_ops: dict[str, tuple[str, ...]],
        nodes: int,
        c_pp: int,
        c_p: int,
        c: int,
        reduction_prev: bool,
    ):
        super().__init__()
        self.kind, self.nodes = kind, nodes
        self.stride = 2 if kind == "reduce" else 1
        self.preprocess0 = ReLUConvBN(c_p, c, 1, 1, 0)  # h-1 (in0)
        self.preprocess1 = (
            factorized_reduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        )
        self.edges = nn.ModuleDict()
        for edge, ops in edge_ops.items():
            stride = self.stride if parse_edge(edge)[0] in INPUTS else 1
            self.edges[edge] = nn.ModuleDict({op: make_eval_op(op, c, stride) for op in ops})
        self.incoming = {j: [e for e in edge_ops if parse_edge(e)[1] == j] for j in range(nodes)}

    def forward(self, h1: torch.Tensor, h2: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = {"in0": self.preprocess0(h1), "in1": self.preprocess1(h2)}
        n, c, h, w = states["in0"].shape
        shape = (n, c, (h - 1) // self.stride + 1, (w - 1) // self.stride + 1)
        for j in range(self.nodes):
            total = None
            for edge in self.incoming[j]:
                x = states[parse_edge(edge)[0]]
                for op in self.edges[edge].values():
                    y = op(x)
                    if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                        y = drop_path(y, drop_prob)
                    total = y if total is None else total + y
            if total is None:  # a dead node
                total = states["in0"].new_zeros(shape)
            states[str(j)] = total
        return torch.cat([states[str(j)] for j in range(self.nodes)], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS's AuxiliaryHeadCIFAR: ReLU -> AvgPool 5 stride 3 (8x8 -> 2x2) -> Conv 1x1 128 -> BN ->
    ReLU -> Conv 2x2 768 -> BN -> ReLU -> Linear. On maps under 5x5 (tiny images) the pooling is an
    adaptive average pool to 2x2 instead."""

    def __init__(self, c: int, num_classes: int):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        x = self.pool(x) if min(x.shape[-2:]) >= 5 else nn.functional.adaptive_avg_pool2d(x, 2)
        x = self.features(x)
        return self.classifier(x.flatten(1))


class DartsEvalNetwork(ChildBase):
    """DARTS's NetworkCIFAR of `arch` (see the module docstring)."""

    space_class = DartsCellSpace

    def __init__(
        self,
        arch: Architecture,
        filters: int = 36,
        cells: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        auxiliary: bool = True,
        drop_path: float = 0.2,
    ):
        super().__init__(arch)
        space = self.space
        check(
            isinstance(filters, int) and filters >= 1 and filters % 2 == 0,
            f"model.filters={filters!r} must be an even integer >= 2 (FactorizedReduce halves it; "
            f"DARTS uses 36)",
        )
        check(
            isinstance(cells, int) and cells >= 3,
            f"model.cells={cells!r} must be an integer >= 3 (reduction cells at 1/3 and 2/3 of the "
            f"depth; DARTS uses 20)",
        )
        check(0 <= drop_path < 1, f"model.drop_path={drop_path!r} must lie in [0, 1) (DARTS: 0.2)")
        self.auxiliary, self.drop_path = auxiliary, drop_path
        self.drop_prob = 0.0  # set by the training module each epoch
        nodes = space.num_nodes
        cell_ops = {
            cell: {e: arch[f"{cell}/{e}"] for e in space.edges[cell] if arch[f"{cell}/{e}"]}
            for cell in CELLS
        }
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 3 * filters, 3, padding=1, bias=False),
            nn.BatchNorm2d(3 * filters),
        )
        self.reductions = (cells // 3, 2 * cells // 3)
        self.aux_after = 2 * cells // 3
        self.cells = nn.ModuleList()
        c_pp = c_p = 3 * filters
        c, reduction_prev, c_aux = filters, False, None
        for i in range(cells):
            kind = "reduce" if i in self.reductions else "normal"
            if kind == "reduce":
                c *= 2
            self.cells.append(EvalCell(kind, cell_ops[kind], nodes, c_pp, c_p, c, reduction_prev))
            reduction_prev = kind == "reduce"
            c_pp, c_p = c_p, nodes * c
            if i == self.aux_after:
                c_aux = c_p
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes) if auxiliary else None
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor):
        """Logits [N, classes]; in training with `auxiliary`, (logits, auxiliary logits)."""
        aux = None
        h1 = h2 = self.stem(x)
        for i, cell in enumerate(self.cells):
            h1, h2 = cell(h1, h2, self.drop_prob), h1
            if i == self.aux_after and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(h1)
        logits = self.classifier(h1.mean(dim=(2, 3)))
        return (logits, aux) if aux is not None else logits

    def num_params(self, auxiliary: bool = False) -> int:
        """Parameters, the auxiliary head's only with `auxiliary` (DARTS reports them without)."""
        return sum(
            p.numel()
            for name, p in self.named_parameters()
            if auxiliary or not name.startswith("auxiliary_head.")
        )
