"""The one-shot cell network: choice blocks, cells, and the supernet holding every path.

`CellNetwork` is built from one (inputs, ops) spec per choice block and is shared by the over-
parameterised `Supernet` (every option, ghost batch norm, masks) and the stand-alone `ChildNet` (only
the chosen options, ordinary batch norm). Both name their submodules identically, so a child's
state_dict is a subset of the supernet's and `extract(arch, copy_weights=True)` is a plain copy.

Shapes: images [N, C, H, W]; masks[name] is [G, k] with G = number of ghost batches (or 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nas.errors import check
from nas.ops import OPS, BNReLUConv, make_norm
from nas.routing import Ghost, GhostLayout, PathMask, masked_sum
from nas.spaces.oneshot_cell import CELL_INPUTS, OneShotCellSpace

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
        in_mask: PathMask | None = None,
        op_mask: PathMask | None = None,
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
            return torch.zeros_like(next(iter(candidates.values())))
        out = masked_sum(
            self.op_names,
            lambda n, x, g: self.ops[n](x, g),
            lambda n: h,
            op_mask,
            self._cheap.__contains__,
            dense,
            ghost,
        )
        return torch.zeros_like(h) if out is None else out


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
        masks: Sequence[tuple[PathMask, PathMask]] | None = None,
        dense: bool = False,
    ):
        candidates = {}
        for name, x in zip(CELL_INPUTS, (prev_prev, prev), strict=True):
            candidates[name] = self.adapt[name](x, ghost) if name in self.adapt else x
        outputs = []
        for i, block in enumerate(self.blocks):
            in_mask, op_mask = masks[i] if masks is not None else (None, None)
            out = block(candidates, ghost, in_mask, op_mask, dense)
            candidates[f"block{i}"] = out
            outputs.append(out)
        return self.out(torch.cat(outputs, dim=1), ghost)


class CellNetwork(nn.Module):
    """Stem, `cells` cells in `stages` stages (width doubles, resolution halves), BN-ReLU, pool, linear."""

    def __init__(
        self,
        space: OneShotCellSpace,
        blocks: Sequence[BlockSpec],
        ghost: bool,
        filters: int = 16,
        cells: int = 6,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__()
        for key, value, low in (
            ("filters", filters, 1),
            ("cells", cells, 1),
            ("stages", stages, 1),
            ("num_classes", num_classes, 2),
            ("in_channels", in_channels, 1),
        ):
            check(
                isinstance(value, int) and value >= low,
                f"model.{key}={value!r} must be an integer >= {low}",
            )
        check(
            cells >= stages,
            f"model.cells={cells} must be >= model.stages={stages} (one cell per stage at least)",
        )
        self.space, self.ghost = space, ghost
        self.config = {
            "filters": filters,
            "cells": cells,
            "stages": stages,
            "num_classes": num_classes,
            "in_channels": in_channels,
        }
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

    def forward(
        self, x: torch.Tensor, ghost: Ghost = None, cell_masks=None, dense: bool = False
    ) -> torch.Tensor:
        s = self.stem(x)
        pp = p = s
        for cell in self.cells:
            pp, p = p, cell(pp, p, ghost, cell_masks, dense)
        out = torch.relu(self.final_bn(p, ghost))
        return self.classifier(out.mean(dim=(2, 3)))


class Supernet(CellNetwork):
    """Every path of the space; `forward(x, masks, ghost_size)` computes the masked sum of paths."""

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
        super().__init__(space, blocks, True, filters, cells, stages, num_classes, in_channels)
        # conv/linear weights and their paths, for masked L2 (parameters keep identity under .to())
        self._decayed = [(p, self.path_of(n)) for n, p in self.named_parameters() if p.dim() > 1]

    def forward(
        self,
        x: torch.Tensor,
        masks: Mapping[str, torch.Tensor] | None = None,
        ghost_size: Ghost = None,
        dense: bool = False,
    ) -> torch.Tensor:
        """Logits [N, classes].

        masks: decision -> 0/1 [G, k], one row per ghost batch (or 1 row for all); default all-on.
        ghost_size: examples per ghost batch (or explicit sizes); None means one ghost batch.
        dense: compute the plain masked sum over the whole batch (reference) instead of running each
        path only on the ghost batches that use it; both give the same result.
        """
        layout = GhostLayout(x.shape[0], ghost_size, x.device)
        if masks is None:
            masks = self.space.full_masks(1)
        self.space.check_masks(masks, layout.count)
        cell_masks = []
        for i in range(self.space.num_blocks):
            inputs, ops = (
                PathMask(
                    self.space.decision(f"block{i}/{kind}").options,
                    masks[f"block{i}/{kind}"],
                    layout,
                )
                for kind in ("inputs", "ops")
            )
            # a block's ops run only where it has an input on (see ChoiceBlock)
            cell_masks.append((inputs, ops.restricted(inputs.any)))
        layout.prepare(rows for pair in cell_masks for mask in pair for rows in mask.rows.values())
        return super().forward(x, layout.ghost, cell_masks, dense)

    def path_fractions(self, masks: Mapping[str, torch.Tensor]) -> dict[tuple, float]:
        """Fraction of ghost batches that use each path (keys as in `path_of`; () is always 1).

        An op counts as used only in ghost batches where its block has an input on (elsewhere its
        output is zeroed); a cell-input adapter where some block takes that input.
        """
        fractions: dict[tuple, float] = {(): 1.0}
        takes = {n: torch.zeros(1) for n in CELL_INPUTS}
        for i in range(self.space.num_blocks):
            m_in, m_op = masks[f"block{i}/inputs"].cpu(), masks[f"block{i}/ops"].cpu()
            inputs = self.space.decision(f"block{i}/inputs").options
            alive = (m_in.sum(1) > 0).float()
            for j, n in enumerate(inputs):
                fractions["inputs", i, n] = m_in[:, j].mean().item()
                if n in takes:
                    takes[n] = torch.maximum(takes[n], m_in[:, j])
            for j, o in enumerate(self.space.ops):
                fractions["ops", i, o] = (m_op[:, j] * alive).mean().item()
        fractions.update({("adapt", n): used.mean().item() for n, used in takes.items()})
        return fractions

    def l2_penalty(self, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Σ_p u_p · ||w_p||² over conv/linear weights, u_p the fraction of ghost batches using p."""
        if not hasattr(
            self, "_decayed"
        ):  # (weight, path) pairs; parameters keep identity under .to()
            self._decayed = [
                (p, self.path_of(n)) for n, p in self.named_parameters() if p.dim() > 1
            ]
        fractions = self.path_fractions(masks)
        weights = [p for p, _ in self._decayed]
        usage = torch.tensor([fractions[key] for _, key in self._decayed], dtype=torch.float32)
        norms = torch.stack(
            torch._foreach_norm(weights)
        ).float()  # one fused kernel, not one per tensor
        return (usage.to(norms.device, non_blocking=True) * norms.square()).sum()

    @staticmethod
    def path_of(module_name: str) -> tuple[str, ...]:
        """The switchable path a submodule belongs to: ("inputs"|"ops", block, option), ("adapt",
        input) or () for always-present modules (stem, cell outputs, classifier)."""
        parts = module_name.split(".")
        if (
            len(parts) >= 6
            and parts[0] == "cells"
            and parts[2] == "blocks"
            and parts[4] in ("inputs", "ops")
        ):
            return (parts[4], int(parts[3]), parts[5])
        if len(parts) >= 4 and parts[0] == "cells" and parts[2] == "adapt":
            return ("adapt", parts[3])
        return ()

    @staticmethod
    def paths_used(arch) -> set[tuple[str, ...]]:
        """Every path (in the sense of `path_of`) present in the stand-alone network of `arch`."""
        used: set[tuple[str, ...]] = {()}
        for i in range(arch.space.num_blocks):
            used |= {("inputs", i, n) for n in arch[f"block{i}/inputs"]}
            used |= {("ops", i, o) for o in arch[f"block{i}/ops"]}
            used |= {("adapt", n) for n in arch[f"block{i}/inputs"]}
        return used

    def extract(self, arch, copy_weights: bool = False):
        """A stand-alone `ChildNet` for `arch` (optionally carrying the shared weights over)."""
        from nas.child import ChildNet

        child = ChildNet(arch, **self.config)
        if copy_weights:
            own = self.state_dict()
            wanted = child.state_dict()
            child.load_state_dict({k: own.get(k, v) for k, v in wanted.items()})
        return child
