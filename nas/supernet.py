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
from nas.ghost_bn import num_ghosts, per_example
from nas.ops import OPS, BNReLUConv, make_norm
from nas.spaces.oneshot_cell import CELL_INPUTS, OneShotCellSpace

BlockSpec = tuple[
    tuple[str, ...], tuple[str, ...]
]  # (chosen inputs, chosen ops) of one choice block


class _Mask:
    """One decision's mask for a batch: per-example columns, plus which options any ghost batch uses."""

    def __init__(
        self, options: Sequence[str], rows: torch.Tensor, batch: int, ghost_size: int | None, device
    ):
        active = (
            rows.detach().cpu().bool().any(0).tolist()
        )  # masks come from the CPU sampler: no sync
        self.active = {o for o, a in zip(options, active, strict=True) if a}
        self.column = {}
        if self.active:
            full = per_example(rows.to(device, non_blocking=True), batch, ghost_size)
            self.column = {
                o: full[:, j].view(-1, 1, 1, 1) for j, o in enumerate(options) if o in self.active
            }
        self.any_rows = rows.detach().cpu().bool().any(1)  # [G] does a ghost batch use any option
        self.alive = per_example(self.any_rows.to(device, torch.float32), batch, ghost_size).view(
            -1, 1, 1, 1
        )


class ChoiceBlock(nn.Module):
    """Σ_inputs m_j · Conv1x1_j(ReLU(BN_j(x_j))), then Σ_ops m_o · op_o(h); zero if no input is on."""

    def __init__(self, channels: int, inputs: Sequence[str], ops: Sequence[str], ghost: bool):
        super().__init__()
        self.input_names, self.op_names = tuple(inputs), tuple(ops)
        self.inputs = nn.ModuleDict(
            {n: BNReLUConv(channels, channels, 1, ghost=ghost) for n in inputs}
        )
        self.ops = nn.ModuleDict({n: OPS[n](channels, ghost) for n in ops})

    def forward(
        self,
        candidates: Mapping[str, torch.Tensor],
        ghost_size: int | None = None,
        in_mask: _Mask | None = None,
        op_mask: _Mask | None = None,
    ) -> torch.Tensor:
        ref = next(iter(candidates.values()))
        h = _masked_sum(
            self.inputs, self.input_names, in_mask, lambda n, m: m(candidates[n], ghost_size)
        )
        if h is None:
            return torch.zeros_like(ref)
        out = _masked_sum(self.ops, self.op_names, op_mask, lambda n, m: m(h, ghost_size))
        if out is None:
            return torch.zeros_like(h)
        # a ghost batch whose inputs are all off has h = 0, but BN inside ops would turn 0 into β
        return out if in_mask is None else out * in_mask.alive


def _masked_sum(modules: nn.ModuleDict, names, mask: _Mask | None, apply) -> torch.Tensor | None:
    """Sum of apply(name, module) over names that are on (times their per-example mask column)."""
    total = None
    for name in names:
        if mask is not None and name not in mask.active:
            continue  # no ghost batch uses this path: skipping it equals the dense masked sum
        term = apply(name, modules[name])
        if mask is not None:
            term = term * mask.column[name].to(term.dtype)
        total = term if total is None else total + term
    return total


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
        self, prev_prev, prev, ghost_size=None, masks: Sequence[tuple[_Mask, _Mask]] | None = None
    ):
        candidates = {}
        for name, x in zip(CELL_INPUTS, (prev_prev, prev), strict=True):
            candidates[name] = self.adapt[name](x, ghost_size) if name in self.adapt else x
        outputs = []
        for i, block in enumerate(self.blocks):
            in_mask, op_mask = masks[i] if masks is not None else (None, None)
            # candidates of differing shape only occur for unused inputs; keep the cell's own shape
            out = block(
                {n: candidates[n] for n in block.input_names} or candidates,
                ghost_size,
                in_mask,
                op_mask,
            )
            candidates[f"block{i}"] = out
            outputs.append(out)
        return self.out(torch.cat(outputs, dim=1), ghost_size)


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
        self, x: torch.Tensor, ghost_size: int | None = None, cell_masks=None
    ) -> torch.Tensor:
        s = self.stem(x)
        pp = p = s
        for cell in self.cells:
            pp, p = p, cell(pp, p, ghost_size, cell_masks)
        out = torch.relu(self.final_bn(p, ghost_size))
        return self.classifier(out.mean(dim=(2, 3)))


class Supernet(CellNetwork):
    """Every path of the space; `forward(x, masks, ghost_size)` computes the dense masked sum."""

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

    def forward(
        self,
        x: torch.Tensor,
        masks: Mapping[str, torch.Tensor] | None = None,
        ghost_size: int | None = None,
    ) -> torch.Tensor:
        """Logits [N, classes]; masks default to all-on; ghost_size None means one ghost batch."""
        n = x.shape[0]
        ghost_size = ghost_size or n
        g = num_ghosts(n, ghost_size)
        if masks is None:
            masks = self.space.full_masks(1)
        self.space.check_masks(masks, g)
        cell_masks = [
            tuple(
                _Mask(
                    self.space.decision(f"block{i}/{kind}").options,
                    masks[f"block{i}/{kind}"],
                    n,
                    ghost_size,
                    x.device,
                )
                for kind in ("inputs", "ops")
            )
            for i in range(self.space.num_blocks)
        ]
        return super().forward(x, ghost_size, cell_masks)

    def path_usage(
        self, masks: Mapping[str, torch.Tensor]
    ) -> list[tuple[list[nn.Parameter], float]]:
        """(parameters, fraction of ghost batches using them) for every maskable path.

        An op counts as used only in ghost batches where its block also has an input on (otherwise its
        output is zeroed). Everything not listed (stem, adapters, cell outputs, classifier) is always used.
        """
        usage = []
        for i in range(self.space.num_blocks):
            m_in, m_op = masks[f"block{i}/inputs"].cpu(), masks[f"block{i}/ops"].cpu()
            alive = (m_in.sum(1) > 0).float()
            fractions = {
                ("inputs", n): m_in[:, j].mean().item()
                for j, n in enumerate(self.space.decision(f"block{i}/inputs").options)
            }
            fractions.update(
                {
                    ("ops", n): (m_op[:, j] * alive).mean().item()
                    for j, n in enumerate(self.space.ops)
                }
            )
            for (kind, name), fraction in fractions.items():
                params = [
                    p
                    for cell in self.cells
                    for p in getattr(cell.blocks[i], kind)[name].parameters()
                ]
                if params:
                    usage.append((params, fraction))
        return usage

    def l2_penalty(self, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Σ usage · ||w||² over conv/linear weights (dim > 1), usage 1 for always-on weights."""
        usage = self.path_usage(masks)
        masked = {id(p) for params, _ in usage for p in params}
        total = sum(
            p.pow(2).sum() for p in self.parameters() if p.dim() > 1 and id(p) not in masked
        )
        for params, fraction in usage:
            if fraction > 0:
                total = total + fraction * sum(p.pow(2).sum() for p in params if p.dim() > 1)
        return total

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
