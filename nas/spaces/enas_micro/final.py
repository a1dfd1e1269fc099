"""The ENAS micro network in final mode: one architecture retrained from scratch, as the authors'
code builds it for `--child_fixed_arc` (`micro_child.py`, `_fixed_layer`, `_fixed_combine`).

Stem Conv3x3 -> BN at 3F channels; `stages` stages of `cells / stages` normal cells at F, 2F, 4F
channels, a reduction cell between stages (the final script: 15 cells, 3 stages, F = 36, so 5 per
stage and 17 in all). Each cell reads the outputs of the two previous cells and first calibrates
them to its C channels: the older one by ReLU -> factorized reduction where it is at twice the
resolution (after a reduction cell), else by ReLU -> Conv1x1 -> BN where its channels differ; the
newer one by ReLU -> Conv1x1 -> BN where its channels differ, and then always once more (the code's
`layer_base`). Node n adds op_a(node[in_a]) and op_b(node[in_b]); in a reduction cell the ops
reading nodes 0 and 1 have stride 2 (the cell has no reduction before it, unlike search mode):

- sep3x3, sep5x5: [ReLU -> depthwise kxk -> pointwise -> BN] x 2, the first at the stride;
- avgpool3x3, maxpool3x3: 3x3 pooling at the stride (average over valid pixels);
- identity: a factorized reduction at stride 2, else the input.

The cell outputs the concatenation of its loose ends (no 1x1 conv after it: the next cell's
calibration is one), a loose input of a reduction cell factorized-reduced first. Head: ReLU ->
global average pool -> dropout (the final script: keep 0.8) -> linear without bias. With
`auxiliary`, DARTS's auxiliary head (nas/spaces/darts_cell/eval_network.py) reads the first
normal cell after the last reduction, as the authors' aux head does; training returns
(logits, aux logits).

Drop-path (training only; not on identities): op outputs zeroed per example with probability
`drop_path · progress · (i + 1) / n` in cell i of n, where `progress` is the fraction of training
done (set by the training module each step): the code's keep probability
1 - step/steps · (i + 1)/(L + 2) · (1 - keep), L + 2 = n cells.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import check
from nas.ops import FactorizedReduction, ReLUConvBN, make_norm
from nas.spaces.base import Architecture
from nas.spaces.darts_cell.eval_network import AuxiliaryHead, drop_path
from nas.spaces.enas_micro.cells import KERNELS, SepConv
from nas.spaces.enas_micro.space import SLOTS, EnasMicroSpace, chosen_input, loose_ends
from nas.spaces.interface import ChildBase, network_config

Shape = tuple[int, int]  # (channels, resolution divisor) of a cell's output


def final_op(op: str, channels: int, stride: int) -> nn.Module:
    """The module of `op` at `channels` channels and `stride` (see the module docstring)."""
    if op in KERNELS:
        return SepConv(channels, KERNELS[op], ghost=False, stride=stride)
    if op == "maxpool3x3":
        return nn.MaxPool2d(3, stride, 1)
    if op == "avgpool3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    return FactorizedReduction(channels, ghost=False) if stride == 2 else nn.Identity()


class FinalMicroCell(nn.Module):
    """One cell of `kind` at `channels` C, reading outputs of shapes `older` and `newer`."""

    def __init__(self, kind: str, arch: Architecture, older: Shape, newer: Shape, channels: int):
        super().__init__()
        space, c = arch.space, channels
        self.kind, self.num_nodes = kind, space.num_nodes
        stride = 2 if kind == "reduce" else 1
        if older[1] != newer[1]:
            check(older[1] * 2 == newer[1], f"cell inputs at 1/{older[1]} and 1/{newer[1]}")
            self.calibrate_older = FactorizedReduction(older[0], c, relu=True, ghost=False)
        elif older[0] != c:
            self.calibrate_older = ReLUConvBN(older[0], c, ghost=False)
        else:
            self.calibrate_older = None
        self.calibrate_newer = ReLUConvBN(newer[0], c, ghost=False) if newer[0] != c else None
        self.base = ReLUConvBN(c, c, ghost=False)
        self.inputs, self.identity = {}, set()
        self.ops = nn.ModuleDict()
        for n in range(2, self.num_nodes):
            for s in SLOTS:
                j = chosen_input(arch, kind, n, s)
                (op,) = arch[f"{kind}/node{n}/op_{s}"]
                self.inputs[n, s] = j
                self.ops[f"node{n}_{s}"] = final_op(op, c, stride if j < 2 else 1)
                if op == "identity":
                    self.identity.add((n, s))
        self.loose = loose_ends(arch, kind)
        self.reduce_loose = nn.ModuleDict(
            {
                str(k): FactorizedReduction(c, ghost=False)
                for k in self.loose
                if k < 2 and stride == 2
            }
        )
        self.out_channels = len(self.loose) * c

    def forward(self, older: torch.Tensor, newer: torch.Tensor, drop_prob: float) -> torch.Tensor:
        if self.calibrate_older is not None:
            older = self.calibrate_older(older)
        if self.calibrate_newer is not None:
            newer = self.calibrate_newer(newer)
        nodes = [older, self.base(newer)]
        for n in range(2, self.num_nodes):
            total = None
            for s in SLOTS:
                y = self.ops[f"node{n}_{s}"](nodes[self.inputs[n, s]])
                if self.training and drop_prob > 0 and (n, s) not in self.identity:
                    y = drop_path(y, drop_prob)
                total = y if total is None else total + y
            nodes.append(total)
        out = [
            self.reduce_loose[str(k)](nodes[k]) if str(k) in self.reduce_loose else nodes[k]
            for k in self.loose
        ]
        return torch.cat(out, dim=1)


class EnasMicroFinalNetwork(ChildBase):
    """The authors' final micro network of `arch` (see the module docstring)."""

    space_class = EnasMicroSpace

    def __init__(
        self,
        arch: Architecture,
        filters: int = 36,
        cells: int = 15,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.2,
        auxiliary: bool = True,
        drop_path: float = 0.4,
    ):
        super().__init__(arch)
        self.config = network_config(filters, cells, stages, num_classes, in_channels)
        check(
            cells % stages == 0,
            f"model.cells={cells} must be a multiple of model.stages={stages}: the same number "
            f"of normal cells in every stage (the authors' final network: 15 cells, 3 stages)",
        )
        check(
            filters % 2 == 0,
            f"model.filters={filters} must be even: a factorized reduction splits the channels "
            f"over two paths (the authors' final network: 36)",
        )
        for key, value, note in (("dropout", dropout, "0.2"), ("drop_path", drop_path, "0.4")):
            check(
                isinstance(value, int | float) and 0 <= value < 1,
                f"model.{key}={value!r} must be a number in [0, 1) (the final script: {note})",
            )
        self.dropout, self.drop_path, self.auxiliary = float(dropout), float(drop_path), auxiliary
        self.drop_progress = 0.0  # the fraction of training done, set by the training module
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 3 * filters, 3, padding=1, bias=False),
            make_norm(3 * filters, False),
        )
        self.cells = nn.ModuleList()
        older = newer = (3 * filters, 1)
        c, div, self.aux_after = filters, 1, 0
        for stage in range(stages):
            kinds = (["reduce"] if stage else []) + ["normal"] * (cells // stages)
            for kind in kinds:
                if kind == "reduce":
                    c, div = 2 * c, 2 * div
                    self.aux_after = len(self.cells) + 1  # the first normal cell after it
                cell = FinalMicroCell(kind, arch, older, newer, c)
                self.cells.append(cell)
                older, newer = newer, (cell.out_channels, div)
        aux_channels = self.cells[self.aux_after].out_channels
        self.auxiliary_head = AuxiliaryHead(aux_channels, num_classes) if auxiliary else None
        self.classifier = nn.Linear(newer[0], num_classes, bias=False)  # the authors' FC

    def forward(self, x: torch.Tensor):
        """Logits [N, classes]; in training with `auxiliary`, (logits, auxiliary logits)."""
        older = newer = self.stem(x)
        aux, n = None, len(self.cells)
        for i, cell in enumerate(self.cells):
            drop_prob = self.drop_path * self.drop_progress * (i + 1) / n
            older, newer = newer, cell(older, newer, drop_prob)
            if i == self.aux_after and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(newer)
        h = F.dropout(torch.relu(newer).mean(dim=(2, 3)), self.dropout, self.training)
        logits = self.classifier(h)
        return (logits, aux) if aux is not None else logits

    def num_params(self) -> int:
        """Parameters without the auxiliary head (as the authors count them)."""
        return sum(
            p.numel()
            for name, p in self.named_parameters()
            if not name.startswith("auxiliary_head.")
        )
