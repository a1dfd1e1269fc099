"""The one-shot cell network: choice blocks, cells, the supernet holding every path, and children.

`CellNetwork` is built from one (inputs, ops) spec per choice block and is shared by the over-
parameterised `OneShotSupernet` (every option, ghost batch norm, path weights) and the stand-alone
`ChildNet` (only the chosen options, ordinary batch norm). Both name their submodules identically, so
a child's state_dict is a subset of the supernet's and `extract(arch, copy_weights=True)` is a copy.

Shapes: images [N, C, H, W]; weights[name] is [G, k] with G = number of ghost batches (or 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nas.errors import check
from nas.ops import OPS, BNReLUConv, make_norm
from nas.routing import Ghost, PathWeights, masked_sum
from nas.spaces.base import Architecture
from nas.spaces.interface import ChildBase, PathKey, SupernetBase, network_config
from nas.spaces.oneshot_cell.space import CELL_INPUTS, OneShotCellSpace

BlockSpec = tuple[
    tuple[str, ...], tuple[str, ...]
]  # (chosen inputs, chosen ops) of one choice block


class ChoiceBlock(nn.Module):
    """Σ_inputs m_j · Conv1x1_j(ReLU(BN_j(x_j))), then Σ_ops m_o · op_o(h); zero if no input is on.

    `op_mask` must already be limited to the ghost batches where some input is on
    (`Supernet.forward` does it): there h = 0, and BN inside the ops would turn 0 into β.
    """

    def __init__(self, channels: int, inputs: Sequence[str], ops: Sequence[str], ghost: bool):
        super().__init__()
        self.input_names, self.op_names = tuple(inputs), tuple(ops)
        self.inputs = nn.ModuleDict(
            {n: BNReLUConv(channels, channels, 1, ghost=ghost) for n in inputs}
        )
        self.ops = nn.ModuleDict({n: OPS[n](channels, ghost) for n in ops})
        self._cheap = {n for n, m in self.ops.items() if getattr(m, "cheap", False)}

    def forward(
        self,
        candidates: Mapping[str, torch.Tensor],
        ghost: Ghost = None,
        in_mask: PathWeights | None = None,
        op_mask: PathWeights | None = None,
        dense: bool = False,
    ) -> torch.Tensor:
        h = masked_sum(
            self.input_names,
            lambda n, x, g: self.inputs[n](x, g),
            candidates.__getitem__,
            in_mask,
            lambda n: False,
            dense,
            ghost,
        )
        if h is None:
            return torch.zeros_like(candidates["prev"])
        out = masked_sum(
            self.op_names,
            lambda n, x, g: self.ops[n](x, g),
            lambda n: h,
            op_mask,
            self._cheap.__contains__,
            dense,
            ghost,
        )
        if out is None:
            # No op is on where an input is: zeros, still joined to the inputs' graph, so the
            # input paths in use get a (zero) gradient whichever other ghost batches share the
            # step, as they do when a parameter-free op joins them (DDP then sums like one batch).
            return h * 0
        return out


class Cell(nn.Module):
    """Choice blocks over the two previous cells' outputs; their concatenation projected to `channels`."""

    def __init__(
        self,
        c_prev_prev: int,
        stride_pp: int,
        c_prev: int,
        stride_p: int,
        channels: int,
        blocks: Sequence[BlockSpec],
        ghost: bool,
    ):
        super().__init__()
        used = {name for inputs, _ in blocks for name in inputs}
        self.adapt = nn.ModuleDict()
        for name, c_in, stride in (
            ("prev_prev", c_prev_prev, stride_pp),
            ("prev", c_prev, stride_p),
        ):
            if name in used and (c_in != channels or stride != 1):
                # a strided 1x1 conv brings an input of another width/resolution to the cell's
                self.adapt[name] = BNReLUConv(c_in, channels, 1, stride=stride, ghost=ghost)
        self.blocks = nn.ModuleList(ChoiceBlock(channels, i, o, ghost) for i, o in blocks)
        self.out = BNReLUConv(len(blocks) * channels, channels, 1, ghost=ghost)

    def forward(
        self,
        prev_prev,
        prev,
        ghost: Ghost = None,
        masks: Sequence[tuple[PathWeights, PathWeights]] | None = None,
        dense: bool = False,
    ):
        candidates = _Candidates(
            self.adapt, dict(zip(CELL_INPUTS, (prev_prev, prev), strict=True)), ghost
        )
        outputs = []
        for i, block in enumerate(self.blocks):
            in_mask, op_mask = masks[i] if masks is not None else (None, None)
            out = block(candidates, ghost, in_mask, op_mask, dense)
            candidates[f"block{i}"] = out
            outputs.append(out)
        return self.out(torch.cat(outputs, dim=1), ghost)


class _Candidates(dict):
    """A cell's candidate inputs; an input that needs an adapter is adapted when first used.

    A sampled architecture often uses only one of the two previous cells: the other's adapter (a
    strided 1x1 convolution) is then never run.
    """

    def __init__(self, adapt: nn.ModuleDict, raw: dict[str, torch.Tensor], ghost: Ghost):
        super().__init__()
        self.adapt, self.raw, self.ghost = adapt, raw, ghost

    def __missing__(self, name: str) -> torch.Tensor:
        x = self.raw[name]
        value = self.adapt[name](x, self.ghost) if name in self.adapt else x
        self[name] = value
        return value


class _CellLayers:
    """Stem, `cells` cells in `stages` stages (width doubles, resolution halves), BN-ReLU, pool,
    linear: built and run the same way by the supernet and the stand-alone child."""

    def _build_layers(
        self,
        blocks: Sequence[BlockSpec],
        ghost: bool,
        filters: int = 16,
        cells: int = 6,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> dict:
        config = network_config(filters, cells, stages, num_classes, in_channels)
        check(
            cells >= stages,
            f"model.cells={cells} must be >= model.stages={stages} (one cell per stage at least)",
        )
        self.stem = nn.Conv2d(in_channels, filters, 3, padding=1, bias=False)
        self.cells = nn.ModuleList()
        # (channels, resolution divisor) of the two previous outputs
        pp, p = (filters, 1), (filters, 1)
        per_stage = [
            cells // stages + (1 if s >= stages - cells % stages else 0) for s in range(stages)
        ]
        for stage, n in enumerate(per_stage):
            for _ in range(n):
                c, div = filters * 2**stage, 2**stage
                self.cells.append(Cell(pp[0], div // pp[1], p[0], div // p[1], c, blocks, ghost))
                pp, p = p, (c, div)
        self.final_bn = make_norm(p[0], ghost)
        self.classifier = nn.Linear(p[0], num_classes)
        return config

    def _run_layers(
        self, x: torch.Tensor, ghost: Ghost = None, cell_weights=None, dense: bool = False
    ) -> torch.Tensor:
        s = self.stem(x)
        pp = p = s
        for cell in self.cells:
            pp, p = p, cell(pp, p, ghost, cell_weights, dense)
        out = torch.relu(self.final_bn(p, ghost))
        return self.classifier(out.mean(dim=(2, 3)))


class OneShotSupernet(SupernetBase, _CellLayers):
    """Every path of the space; `forward(x, weights, ghost)` computes the weighted sum of paths.

    Paths: `(block{i}/inputs, input)` and `(block{i}/ops, op)` in every cell, and `("adapt", input)`
    for the 1x1 convolutions that bring a previous cell to the width and resolution of the next.
    """

    def __init__(
        self,
        space: OneShotCellSpace,
        filters: int = 16,
        cells: int = 6,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        blocks = [
            (space.decision(f"block{i}/inputs").options, space.ops) for i in range(space.num_blocks)
        ]
        super().__init__(space, {})
        self.config = self._build_layers(
            blocks, True, filters, cells, stages, num_classes, in_channels
        )
        for cell in self.cells:
            for name, adapter in cell.adapt.items():
                self.declare_path(("adapt", name), adapter)
            for i, block in enumerate(cell.blocks):
                for name, module in block.inputs.items():
                    self.declare_path((f"block{i}/inputs", name), module)
                for name, module in block.ops.items():
                    self.declare_path((f"block{i}/ops", name), module)

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
        dense: compute the plain weighted sum over the whole batch (reference) instead of running
        each path only on the ghost batches that use it; both give the same result.
        """
        layout, routed = self.route(x, weights, ghost)
        cell_weights = []
        for i in range(self.space.num_blocks):
            inputs = routed[f"block{i}/inputs"]
            # a block's ops run only where it has an input on (see ChoiceBlock)
            cell_weights.append((inputs, routed[f"block{i}/ops"].restricted(inputs.any)))
        layout.prepare(rows for pair in cell_weights for w in pair for rows in w.rows.values())
        return self._run_layers(x, layout.ghost, cell_weights, dense)

    def path_usage(self, weights: Mapping[str, torch.Tensor]) -> dict[PathKey, torch.Tensor]:
        """An op is used only where its block has an input on (elsewhere its output is zeroed); an
        adapter where some block takes that input."""
        usage: dict[PathKey, torch.Tensor] = {}
        takes: dict[str, torch.Tensor] = {}
        for i in range(self.space.num_blocks):
            on_in = (weights[f"block{i}/inputs"].detach() != 0).float()
            on_op = (weights[f"block{i}/ops"].detach() != 0).float()
            alive = on_in.amax(1)
            for j, name in enumerate(self.space.decision(f"block{i}/inputs").options):
                usage[f"block{i}/inputs", name] = on_in[:, j]
                if name in CELL_INPUTS:
                    takes[name] = torch.maximum(takes.get(name, on_in[:, j]), on_in[:, j])
            for j, op in enumerate(self.space.ops):
                usage[f"block{i}/ops", op] = on_op[:, j] * alive
        usage.update({("adapt", name): used for name, used in takes.items()})
        return usage

    def paths_used(self, arch: Architecture) -> set[PathKey]:
        used = super().paths_used(arch)
        inputs = {n for i in range(self.space.num_blocks) for n in arch[f"block{i}/inputs"]}
        return used | {("adapt", n) for n in inputs & set(CELL_INPUTS)}


class ChildNet(ChildBase, _CellLayers):
    """The cell network of `arch` with ordinary batch norm; unused paths do not exist."""

    space_class = OneShotCellSpace

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
        blocks = [
            (arch[f"block{i}/inputs"], arch[f"block{i}/ops"]) for i in range(self.space.num_blocks)
        ]
        self.config = self._build_layers(
            blocks, False, filters, cells, stages, num_classes, in_channels
        )
