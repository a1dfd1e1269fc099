"""ENAS micro networks: the supernet holding every (op, input) path of both cells, and children.

Wiring of the authors' search-mode network (`micro_child.py`): stem Conv3x3 -> BN at 3F channels,
`model.stages` stages of `model.cells / model.stages` normal cells at F, 2F, 4F, ... channels and, between
stages, a reduction cell. Before a reduction cell the channels C double and the previous output gets
a factorized reduction to 2C; the reduction cell then runs at stride 1 on [previous, reduced] (the
authors' search mode). Every cell takes the outputs of the two previous layers and first calibrates
them to its channels and resolution (trunk). Head: ReLU -> global average pool -> linear.

Inside a cell (`cells.py`) node n (2..B-1) is op_a(node[in_a]) + op_b(node[in_b]). As in the
authors' code, the separable-convolution weights (and their BN) are separate per (node, slot a/b,
op, input node), so each is the derived path `("{cell}/node{n}/op_{s}", op, "{cell}/{j}")`, used
where in_s picks j and op_s picks op; its real-valued weight is w_in[j] · w_op[op]. The output is
ReLU -> 1x1 conv over the concatenation of the loose ends -> BN, computed as
Σ_k L_k · Conv1x1_k(ReLU(node k)) -> BN, one path `("{cell}/out", "{cell}/{k}")` per slice, with
L_k = Π over the in-decisions of later nodes of (1 - w_in[k]): 1 exactly where no node takes k, for
0/1 weights.

Supernet and child name their submodules identically, so a child's state_dict is a subset of the
supernet's and `extract(arch, copy_weights=True)` is a copy. Shapes: images [N, C, H, W];
weights[decision] is [G, k] with G = number of ghost batches (or 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import check
from nas.ops import FactorizedReduction, make_norm
from nas.routing import Ghost, GhostLayout, PathWeights
from nas.spaces.base import Architecture
from nas.spaces.enas_micro.cells import REDUCTION_NAMES, CellSpec, MicroCell, Pair, op_key
from nas.spaces.enas_micro.space import CELLS, SLOTS, EnasMicroSpace
from nas.spaces.interface import TRUNK, ChildBase, PathKey, SupernetBase, network_config


class _MicroLayers:
    """Stem, cells (reduction cells between stages) and head: built and run alike by both networks."""

    def _build_layers(
        self,
        specs: Mapping[str, CellSpec],
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
            f"model.cells={cells} must be a multiple of model.stages={stages}: ENAS micro puts the "
            f"same number of normal cells in every stage, with a reduction cell between stages "
            f"(the authors' search network: cells=6, stages=3)",
        )
        self.stem = nn.Conv2d(in_channels, 3 * filters, 3, padding=1, bias=False)
        self.stem_bn = make_norm(3 * filters, ghost)
        self.cells = nn.ModuleList()
        pp = p = (3 * filters, 1)  # (channels, resolution divisor) of the two previous outputs
        c, div = filters, 1
        for stage in range(stages):
            if stage:
                c, div = 2 * c, 2 * div
                reduce = FactorizedReduction(p[0], c, ghost=ghost, names=REDUCTION_NAMES)
                self.cells.append(
                    MicroCell("reduce", [p, (c, div)], c, div, specs["reduce"], reduce, ghost)
                )
                pp, p = (c, div), (c, div)
            for _ in range(cells // stages):
                self.cells.append(
                    MicroCell("normal", [pp, p], c, div, specs["normal"], None, ghost)
                )
                pp, p = p, (c, div)
        self.classifier = nn.Linear(c, num_classes)
        return config

    def _run_layers(
        self,
        x: torch.Tensor,
        ghost: Ghost = None,
        routed: Mapping[str, Mapping] | None = None,
        dense: bool = False,
    ) -> torch.Tensor:
        h = self.stem_bn(self.stem(x), ghost)
        pp = p = h
        for cell in self.cells:
            if cell.reduce is not None:
                pp, p = p, cell.reduce(p, ghost)
            out = cell(pp, p, ghost, routed[cell.kind] if routed is not None else None, dense)
            pp, p = p, out
        return self.classifier(torch.relu(p).mean(dim=(2, 3)))


def _pair_options(ops: Sequence[str], n: int) -> tuple[Pair, ...]:
    return tuple((op, j) for op in ops for j in range(n))


class EnasMicroSupernet(SupernetBase, _MicroLayers):
    """Every (op, input) pair of every node slot and every output slice, in every cell.

    Paths: `("{cell}/node{n}/op_{s}", op, "{cell}/{j}")` for the separable convolutions (pooling and
    identity hold no weights), `("{cell}/out", "{cell}/{k}")` for the output's 1x1 slices. The trunk:
    stem, calibrations, factorized reductions, cell output BNs, classifier.
    """

    def __init__(
        self,
        space: EnasMicroSpace,
        filters: int = 20,
        cells: int = 6,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        check(
            isinstance(space, EnasMicroSpace),
            f"EnasMicroSupernet needs the enas_micro space, got {getattr(space, 'name', space)!r}",
        )
        super().__init__(space, {})
        nodes = space.num_nodes
        pairs = {(n, s): _pair_options(space.ops, n) for n in range(2, nodes) for s in SLOTS}
        spec = (pairs, tuple(range(nodes)))
        self.config = self._build_layers(
            {cell: spec for cell in CELLS}, True, filters, cells, stages, num_classes, in_channels
        )
        for cell in self.cells:
            kind = cell.kind
            for (n, s), options in cell.pairs.items():
                for op, j in options:
                    key = op_key(n, s, op, j)
                    if key in cell.ops:
                        self.declare_path(
                            (f"{kind}/node{n}/op_{s}", op, f"{kind}/{j}"), cell.ops[key]
                        )
            for k in cell.outs:
                self.declare_path((f"{kind}/out", f"{kind}/{k}"), cell.out[str(k)])

    def forward(
        self,
        x: torch.Tensor,
        weights: Mapping[str, torch.Tensor] | None = None,
        ghost: Ghost = None,
        dense: bool = False,
    ) -> torch.Tensor:
        """Logits [N, classes].

        weights: decision -> [G, k], one row per ghost batch (or 1 row for all); default all-on.
        ghost: examples per ghost batch (or explicit sizes); None means one ghost batch.
        dense: the plain weighted sum over the whole batch (reference) instead of running each path
        only on the ghost batches that use it; both give the same result.
        """
        layout, routed = self.route_pairs(x, weights, ghost)
        layout.prepare(
            rows for cell in routed.values() for w in cell.values() for rows in w.rows.values()
        )
        return self._run_layers(x, layout.ghost, routed, dense)

    def route_pairs(
        self, x: torch.Tensor, weights: Mapping[str, torch.Tensor] | None, ghost
    ) -> tuple[GhostLayout, dict[str, dict]]:
        """The ghost layout of `x` and, per cell, the derived `PathWeights`: {(n, slot): weights of
        the (op, input) pairs, w_op · w_in}, and {"out": loose-end weights of the nodes}.

        `SupernetBase.route` checks the weights the same way but routes the decisions themselves; the
        forward uses only the derived weights, read to the host in one copy.
        """
        layout = GhostLayout(x.shape[0], ghost, x.device)
        if weights is None:
            weights = self.space.full_masks(1)
        self.space.check_weights(weights, layout.count)
        derived = {}
        for cell, (pairs, loose) in self._derived(weights).items():
            nodes = self.space.num_nodes
            for (n, s), values in pairs.items():
                derived[cell, n, s] = (_pair_options(self.space.ops, n), values)
            derived[cell, "out"] = (tuple(range(nodes)), loose)
        flat = PathWeights.for_decisions(derived, layout)
        routed: dict[str, dict] = {cell: {} for cell in CELLS}
        for (cell, *rest), w in flat.items():
            routed[cell][tuple(rest) if len(rest) == 2 else rest[0]] = w
        return layout, routed

    def _derived(self, weights: Mapping[str, torch.Tensor]) -> dict[str, tuple[dict, torch.Tensor]]:
        """Per cell: {(n, slot): pair values [G, ops·n]} (op-major) and loose-end values [G, nodes]."""
        nodes, out = self.space.num_nodes, {}
        for cell in CELLS:
            pairs, loose = {}, None
            for n in range(2, nodes):
                for s in SLOTS:
                    w_in = weights[f"{cell}/node{n}/in_{s}"]
                    w_op = weights[f"{cell}/node{n}/op_{s}"].to(w_in.device)
                    pairs[n, s] = (w_op[:, :, None] * w_in[:, None, :]).flatten(1)
                    term = 1 - F.pad(w_in, (0, nodes - n))
                    loose = term if loose is None else loose * term
            out[cell] = (pairs, loose)
        return out

    def path_usage(self, weights: Mapping[str, torch.Tensor]) -> dict[PathKey, torch.Tensor]:
        """A pair path is used where its input and its op are on; an output slice where its loose-end
        weight is non-zero (no later in-decision has weight 1 on its node)."""
        on = {d.name: (weights[d.name].detach() != 0).float() for d in self.space.decisions}
        rows = max(w.shape[0] for w in on.values())
        device = next(iter(on.values())).device
        ops = {op: i for i, op in enumerate(self.space.ops)}
        nodes, loose = self.space.num_nodes, {}
        for cell in CELLS:
            free = torch.ones(rows, nodes, device=device)
            for n in range(2, nodes):
                for s in SLOTS:
                    w_in = weights[f"{cell}/node{n}/in_{s}"].detach().to(device)
                    free = free * F.pad((w_in != 1).float(), (0, nodes - n), value=1.0)
            loose[cell] = free
        usage = {}
        for key in self.path_keys():
            cell, k = key[-1].rsplit("/", 1)
            if len(key) == 2:  # ("{cell}/out", "{cell}/{k}")
                usage[key] = loose[cell][:, int(k)]
            else:  # ("{cell}/node{n}/op_{s}", op, "{cell}/{j}")
                op_decision, op = key[0], key[1]
                in_decision = op_decision.replace("/op_", "/in_")
                w_in, w_op = on[in_decision].to(device), on[op_decision].to(device)
                usage[key] = (w_in[:, int(k)] * w_op[:, ops[op]]).expand(rows)
        return usage

    def paths_used(self, arch: Architecture) -> set[PathKey]:
        used: set[PathKey] = {TRUNK}
        for cell, (pairs, outs) in _cell_specs(arch).items():
            for (n, s), options in pairs.items():
                used |= {(f"{cell}/node{n}/op_{s}", op, f"{cell}/{j}") for op, j in options}
            used |= {(f"{cell}/out", f"{cell}/{k}") for k in outs}
        return used & ({TRUNK} | set(self.path_keys()))


def _cell_specs(arch: Architecture) -> dict[str, CellSpec]:
    """Per cell, the (op, input) pairs of every node slot and the loose ends, as `arch` chooses
    (several per decision for the all-on architecture)."""
    space = arch.space
    specs = {}
    for cell in CELLS:
        pairs, taken = {}, set()
        for n in range(2, space.num_nodes):
            for s in SLOTS:
                inputs = [int(o.rsplit("/", 1)[1]) for o in arch[f"{cell}/node{n}/in_{s}"]]
                pairs[n, s] = tuple(
                    (op, j) for op in arch[f"{cell}/node{n}/op_{s}"] for j in inputs
                )
                taken.update(inputs)
        specs[cell] = (pairs, tuple(k for k in range(space.num_nodes) if k not in taken))
    return specs


class EnasMicroChild(ChildBase, _MicroLayers):
    """The network of one architecture with ordinary batch norm; only its chosen paths exist."""

    space_class = EnasMicroSpace

    def __init__(
        self,
        arch: Architecture,
        filters: int = 20,
        cells: int = 6,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__(arch)
        self.config = self._build_layers(
            _cell_specs(arch), False, filters, cells, stages, num_classes, in_channels
        )
