"""NAS-Bench-201 networks: the supernet holding every op on every edge, and stand-alone children.

Skeleton (the benchmark's): stem Conv3x3-BN, then `stages` stages of `cells / stages` cells at widths
C, 2C, 4C, ..., a stride-2 ResNet basic block between stages, then BN-ReLU, global average pool and a
linear classifier. Ops are ReLU-Conv-BN; "none" has no module (its output is zero, so it is never
computed). Supernet and child name their submodules identically, so a child's state_dict is a subset
of the supernet's and `extract(arch, copy_weights=True)` is a copy (a supernet of a space with
`cell_bn_affine=False` has no BN scale and shift in its cells: the child keeps its initial 1 and 0
there, which computes the same).

`NB201Supernet.add_zero_weights` (off unless a method turns it on): on every edge, each op whose
path weight is exactly 0 in a ghost batch adds that weight, broadcast, to the edge's output there.
Its value is 0, so the output is unchanged; its gradient is the sum of the gradient of the edge's
output over the ghost batch's examples, pixels and channels (and over the cells sharing the edge's
weights). This is GDAS's estimator on NAS-Bench-201 (AutoDL-Projects `NAS201SearchCell.forward_gdas`:
the sampled op's output times its weight, plus the other ops' weights), where only the sampled op
runs. It applies only to weights that carry a gradient (masks add nothing).

Shapes: images [N, C, H, W]; weights[edge] is [G, k] with G = number of ghost batches (or 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nas.errors import check
from nas.ghost_bn import GhostBatchNorm, per_example
from nas.ops import Identity, Pool, ReLUConvBN, make_norm
from nas.routing import Ghost, PathWeights, masked_sum
from nas.spaces.base import Architecture
from nas.spaces.interface import ChildBase, SupernetBase, network_config
from nas.spaces.nb201.space import EDGES, NODES, NB201Space


def make_op(name: str, channels: int, ghost: bool, affine: bool = True) -> nn.Module | None:
    """The module of op `name` at `channels` channels (None for "none": a zero output); `affine`:
    whether its BN learns a scale and shift."""
    if name == "none":
        return None
    if name == "skip_connect":
        return Identity()
    if name == "avg_pool_3x3":
        return Pool("avg")  # 3x3, stride 1, average over the valid pixels only
    kernel = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}[name]
    op = ReLUConvBN(channels, channels, kernel, 1, ghost)
    if not affine:  # the benchmark's search cells: normalisation only
        op.bn = GhostBatchNorm(channels, affine=False, track_running_stats=not ghost)
    return op


def zero_weight_terms(weights: PathWeights) -> torch.Tensor:
    """Per example [N, 1, 1, 1]: the sum of the decision's weights that are exactly 0 in the
    example's ghost batch (0 in value; each such weight gets the gradient of what it is added to)."""
    values = weights.values.to(weights.layout.device)
    off = (values.detach() == 0).to(values.dtype)
    rows = (values * off).sum(-1)
    return per_example(rows, weights.layout.batch, weights.layout.sizes).view(-1, 1, 1, 1)


class ResNetBlock(nn.Module):
    """The stride-2 basic block between stages: conv_b(conv_a(x)) + Conv1x1(AvgPool2x2(x))."""

    def __init__(self, c_in: int, c_out: int, ghost: bool):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, ghost)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, ghost)
        # ceil_mode: same as the benchmark's pooling on even sizes; on odd ones it gives conv_a's
        # ceil(H/2) x ceil(W/2) as well, where floor pooling could not be added to it
        self.downsample = nn.Sequential(
            nn.AvgPool2d(2, 2, ceil_mode=True), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor, ghost: Ghost = None) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x, ghost), ghost)


class NB201Cell(nn.Module):
    """node_j = Σ_{i<j} op_{j<-i}(node_i) for j = 1..3, node_0 the input; the output is node 3.

    `edges[edge][op]` holds the modules of the given ops on every edge ("none" has none). A node with
    no incoming path on is zeros; the ops after it still run (BN turns their zero into β), as in the
    benchmark's networks, so supernet and child agree. `add_zero_weights`: see the module docstring.
    """

    def __init__(
        self,
        channels: int,
        edge_ops: Mapping[str, Sequence[str]],
        ghost: bool,
        affine: bool = True,
    ):
        super().__init__()
        self.edges = nn.ModuleDict()
        for edge in EDGES:
            built = {op: make_op(op, channels, ghost, affine) for op in edge_ops[edge]}
            self.edges[edge] = nn.ModuleDict({op: m for op, m in built.items() if m is not None})

    def forward(
        self,
        x: torch.Tensor,
        ghost: Ghost = None,
        routed: Mapping[str, PathWeights] | None = None,
        dense: bool = False,
        add_zero_weights: bool = False,
    ) -> torch.Tensor:
        nodes = [x]
        for j in range(1, NODES):
            terms = [
                self._edge(
                    f"{j}<-{i}",
                    nodes[i],
                    ghost,
                    routed[f"{j}<-{i}"] if routed else None,
                    dense,
                    add_zero_weights,
                )
                for i in range(j)
            ]
            terms = [t for t in terms if t is not None]
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return nodes[-1]

    def _edge(
        self,
        edge: str,
        h: torch.Tensor,
        ghost: Ghost,
        weights: PathWeights | None,
        dense: bool,
        add_zero_weights: bool = False,
    ) -> torch.Tensor | None:
        """Σ over the edge's ops of weight · op(h) (plus the zero weights where they carry a
        gradient and `add_zero_weights`); None when nothing is on anywhere."""
        ops = self.edges[edge]
        total = masked_sum(
            tuple(ops),
            lambda name, inp, g: ops[name](inp, g),
            lambda name: h,
            weights,
            lambda name: getattr(ops[name], "cheap", False),  # identity and pooling: run densely
            dense,
            ghost,
        )
        if add_zero_weights and weights is not None and weights.values.requires_grad:
            zeros = zero_weight_terms(weights).to(h.dtype)
            total = (torch.zeros_like(h) if total is None else total) + zeros
        return total


class _NB201Layers:
    """Stem, cells and reduction blocks, BN-ReLU, pool, linear: built and run alike by supernet and
    child."""

    add_zero_weights = False  # GDAS's NAS-Bench-201 estimator (module docstring); supernets only

    def _build_layers(
        self,
        edge_ops: Mapping[str, Sequence[str]],
        ghost: bool,
        filters: int,
        cells: int,
        stages: int,
        num_classes: int,
        in_channels: int,
        cell_affine: bool = True,
    ) -> dict:
        config = network_config(filters, cells, stages, num_classes, in_channels)
        check(
            cells % stages == 0,
            f"model.cells={cells} must be a multiple of model.stages={stages}: NAS-Bench-201 puts "
            f"the same number of cells in every stage (the benchmark: cells=15, stages=3)",
        )
        self.stem = nn.Conv2d(in_channels, filters, 3, padding=1, bias=False)
        self.stem_bn = make_norm(filters, ghost)
        self.cells = nn.ModuleList()  # searched cells and the reduction blocks, in order
        c = filters
        for stage in range(stages):
            if stage:
                self.cells.append(ResNetBlock(c, 2 * c, ghost))
                c *= 2
            for _ in range(cells // stages):
                self.cells.append(NB201Cell(c, edge_ops, ghost, cell_affine))
        self.final_bn = make_norm(c, ghost)
        self.classifier = nn.Linear(c, num_classes)
        return config

    def _run_layers(
        self,
        x: torch.Tensor,
        ghost: Ghost = None,
        routed: Mapping[str, PathWeights] | None = None,
        dense: bool = False,
    ) -> torch.Tensor:
        h = self.stem_bn(self.stem(x), ghost)
        for layer in self.cells:
            if isinstance(layer, NB201Cell):
                h = layer(h, ghost, routed, dense, self.add_zero_weights)
            else:
                h = layer(h, ghost)
        h = torch.relu(self.final_bn(h, ghost))
        return self.classifier(h.mean(dim=(2, 3)))  # global average pool: [N, C] -> logits


class NB201Supernet(SupernetBase, _NB201Layers):
    """Every op on every edge; `forward(x, weights, ghost)` computes the weighted sum of paths.

    Paths: `(edge, op)` for every op with weights (the convolutions) in every cell; skip, pooling and
    none hold no parameters. The trunk is the stem, reduction blocks, final BN and classifier. The
    cells' BN learn a scale and shift unless the space says `cell_bn_affine=False`.
    """

    def __init__(
        self,
        space: NB201Space,
        filters: int = 16,
        cells: int = 15,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__(space, {})
        edge_ops = {edge: space.ops for edge in EDGES}
        self.config = self._build_layers(
            edge_ops, True, filters, cells, stages, num_classes, in_channels, space.cell_bn_affine
        )
        for layer in self.cells:
            if isinstance(layer, NB201Cell):
                for edge, ops in layer.edges.items():
                    for op, module in ops.items():
                        if any(True for _ in module.parameters()):
                            self.declare_path((edge, op), module)


class NB201Child(ChildBase, _NB201Layers):
    """The network of one architecture with ordinary batch norm; only the chosen ops exist."""

    space_class = NB201Space

    def __init__(
        self,
        arch: Architecture,
        filters: int = 16,
        cells: int = 15,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__(arch)
        edge_ops = {edge: arch[edge] for edge in EDGES}
        self.config = self._build_layers(
            edge_ops, False, filters, cells, stages, num_classes, in_channels
        )
