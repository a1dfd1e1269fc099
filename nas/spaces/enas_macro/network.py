"""ENAS macro networks: the supernet holding every op of every layer, and stand-alone children.

The search-mode wiring of the ENAS code (`general_child.py`, whole channels): a stem Conv3x3-BN, then
L layers at `filters` channels. Layer i runs its op on layer i-1's output (layer 0: on the stem's) and
adds the outputs of the layers it skips to, then BN:

    h_i = BN(op_i(h_{i-1}) + Σ_{j in skip_i} h_j)

After each layer p of `pool_layers(L, stages)` every stored output h_0..h_p is replaced by a
factorized reduction of itself (stride 2, the channels stay `filters`). Head: global average pool,
dropout, linear. A child is the same wiring restricted to its op and skips; supernet and child name
their submodules identically, so a child's state_dict is a subset of the supernet's and
`extract(arch, copy_weights=True)` is a copy.

Shapes: images [N, C, H, W]; weights[decision] is [G, k] with G = number of ghost batches (or 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import check
from nas.ops import make_norm
from nas.routing import Ghost, PathWeights, masked_sum
from nas.spaces.base import Architecture
from nas.spaces.enas_macro.space import EnasMacroSpace
from nas.spaces.interface import PathKey, SupernetBase, network_config

KERNELS = {"conv3x3": 3, "conv5x5": 5, "sep3x3": 3, "sep5x5": 5}


def pool_layers(layers: int, stages: int) -> list[int]:
    """The layers after which every stored output is reduced: [s * L // stages - 1 for s = 1..stages-1]."""
    return [s * layers // stages - 1 for s in range(1, stages)]


def reductions_used(
    layers: int, pools: Sequence[int], skips_to: Callable[[int, int], bool]
) -> set[tuple[int, int]]:
    """The reductions (p, j) a network needs: h_j is read after layer p (j == p: the next layer's
    input) or some later layer i > p skips to j (`skips_to(i, j)`)."""
    return {
        (p, j)
        for p in pools
        for j in range(p + 1)
        if j == p or any(skips_to(i, j) for i in range(p + 1, layers))
    }


class ConvBranch(nn.Module):
    """1x1 conv -> BN -> ReLU -> k x k conv (or depthwise k x k then pointwise 1x1) -> BN -> ReLU."""

    def __init__(self, channels: int, kernel: int, separable: bool, ghost: bool):
        super().__init__()
        self.conv_in = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn_in = make_norm(channels, ghost)
        pad = kernel // 2
        if separable:
            self.conv = nn.Sequential(
                nn.Conv2d(channels, channels, kernel, padding=pad, groups=channels, bias=False),
                nn.Conv2d(channels, channels, 1, bias=False),
            )
        else:
            self.conv = nn.Conv2d(channels, channels, kernel, padding=pad, bias=False)
        self.bn = make_norm(channels, ghost)

    def forward(self, x: torch.Tensor, ghost: Ghost = None) -> torch.Tensor:
        x = torch.relu(self.bn_in(self.conv_in(x), ghost))
        return torch.relu(self.bn(self.conv(x), ghost))


class PoolBranch(nn.Module):
    """1x1 conv -> BN -> ReLU -> 3x3 pool, stride 1 (average over the valid pixels only)."""

    def __init__(self, channels: int, kind: str, ghost: bool):
        super().__init__()
        self.conv_in = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn_in = make_norm(channels, ghost)
        self.pool = (
            nn.MaxPool2d(3, 1, 1)
            if kind == "max"
            else nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        )

    def forward(self, x: torch.Tensor, ghost: Ghost = None) -> torch.Tensor:
        return self.pool(torch.relu(self.bn_in(self.conv_in(x), ghost)))


def make_op(name: str, channels: int, ghost: bool) -> nn.Module:
    if name in KERNELS:
        return ConvBranch(channels, KERNELS[name], name.startswith("sep"), ghost)
    return PoolBranch(channels, {"avgpool3x3": "avg", "maxpool3x3": "max"}[name], ghost)


class FactorizedReduction(nn.Module):
    """Halve the resolution, keep the channels: [Conv1x1/2(x), Conv1x1/2(x shifted by one pixel)] -> BN.

    The shifted input is x[:, :, 1:, 1:] padded by one row and column at the bottom and right, as in
    ENAS; the first path makes channels // 2 channels, the second the rest.
    """

    def __init__(self, channels: int, ghost: bool):
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels // 2, 1, stride=2, bias=False)
        self.conv_b = nn.Conv2d(channels, channels - channels // 2, 1, stride=2, bias=False)
        self.bn = make_norm(channels, ghost)

    def forward(self, x: torch.Tensor, ghost: Ghost = None) -> torch.Tensor:
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1), ghost)


class MacroLayer(nn.Module):
    """h = BN(Σ_ops w_o · op_o(h_prev) + Σ_skips w_j · h_j); the BN is always on (trunk).

    Skips hold no parameters; in the supernet their weights multiply h_j (identity paths, run
    densely). A row with no op and no skip on gets BN(0).
    """

    def __init__(
        self, channels: int, ops: Sequence[str], skips: Sequence[str], ghost: bool
    ) -> None:
        super().__init__()
        self.op_names, self.skip_names = tuple(ops), tuple(skips)
        self.ops = nn.ModuleDict({op: make_op(op, channels, ghost) for op in ops})
        self.bn = make_norm(channels, ghost)

    def forward(
        self,
        h_prev: torch.Tensor,
        stored: Mapping[str, torch.Tensor],
        ghost: Ghost = None,
        op_weights: PathWeights | None = None,
        skip_weights: PathWeights | None = None,
        dense: bool = False,
    ) -> torch.Tensor:
        out = masked_sum(
            self.op_names,
            lambda n, x, g: self.ops[n](x, g),
            lambda n: h_prev,
            op_weights,
            lambda n: False,  # every op has a 1x1 conv and BN: gather the ghost batches using it
            dense,
            ghost,
        )
        skip = masked_sum(
            self.skip_names,
            lambda n, x, g: x,
            stored.__getitem__,
            skip_weights,
            lambda n: True,  # identity: cheaper dense than gathered
            dense,
            ghost,
        )
        terms = [t for t in (out, skip) if t is not None]
        total = sum(terms[1:], terms[0]) if terms else torch.zeros_like(h_prev)
        return self.bn(total, ghost)


class _MacroLayers:
    """Stem, layers, reductions, pool, dropout, linear: built and run alike by supernet and child."""

    def _build_layers(
        self,
        space: EnasMacroSpace,
        layer_ops: Sequence[Sequence[str]],
        layer_skips: Sequence[Sequence[str]],
        reductions: set[tuple[int, int]] | None,
        ghost: bool,
        filters: int,
        cells: int,
        stages: int,
        num_classes: int,
        in_channels: int,
        dropout: float,
    ) -> dict:
        """Build the modules; `reductions` None: every (p, j). Returns the network config."""
        config = network_config(filters, cells, stages, num_classes, in_channels)
        check(
            cells == space.layers,
            f"model.cells={cells} must equal search_space.layers={space.layers}: the macro space "
            f"decides every layer; set model.cells: ${{search_space.layers}}",
        )
        check(
            stages <= cells,
            f"model.stages={stages} must be <= model.cells={cells}: each stage needs a layer "
            f"(ENAS: 12 layers, 3 stages, reductions after layers 3 and 7)",
        )
        self.pool_layers = pool_layers(cells, stages)
        check(
            filters >= 2 or not self.pool_layers,
            f"model.filters={filters} must be >= 2 when model.stages={stages} > 1: a factorized "
            f"reduction splits the channels over two paths",
        )
        check(
            isinstance(dropout, int | float) and 0 <= dropout < 1,
            f"model.dropout={dropout!r} must be a number in [0, 1) (ENAS: 0.1, keep 0.9)",
        )
        config["dropout"] = dropout
        self.dropout = float(dropout)
        self.stem = nn.Conv2d(in_channels, filters, 3, padding=1, bias=False)
        self.stem_bn = make_norm(filters, ghost)
        self.layers = nn.ModuleList(
            MacroLayer(filters, ops, skips, ghost)
            for ops, skips in zip(layer_ops, layer_skips, strict=True)
        )
        self.reduce = nn.ModuleDict()
        for p in self.pool_layers:
            self.reduce[f"after{p}"] = nn.ModuleDict(
                {
                    f"layer{j}": FactorizedReduction(filters, ghost)
                    for j in range(p + 1)
                    if reductions is None or (p, j) in reductions
                }
            )
        self.classifier = nn.Linear(filters, num_classes)
        return config

    def _run_layers(
        self,
        x: torch.Tensor,
        ghost: Ghost = None,
        routed: Mapping[str, PathWeights] | None = None,
        dense: bool = False,
        reductions: set[tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        """Logits; `reductions`: the (p, j) to compute (None: every one built)."""
        h = self.stem_bn(self.stem(x), ghost)
        stored: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            op_w = routed[f"layer{i}/op"] if routed is not None else None
            skip_w = routed[f"layer{i}/skip"] if routed is not None and i else None
            h = layer(h, stored, ghost, op_w, skip_w, dense)
            stored[f"layer{i}"] = h
            if i in self.pool_layers:
                built = self.reduce[f"after{i}"]
                for j in range(i + 1):
                    name = f"layer{j}"
                    if name in built and (reductions is None or (i, j) in reductions):
                        stored[name] = built[name](stored[name], ghost)
                    else:  # never read again
                        stored.pop(name, None)
                h = stored[f"layer{i}"]
        h = F.dropout(h.mean(dim=(2, 3)), self.dropout, self.training)  # global average pool
        return self.classifier(h)


class EnasMacroSupernet(SupernetBase, _MacroLayers):
    """Every op of every layer and every skip; `forward(x, weights, ghost)` computes the weighted sum.

    Paths: `(layer{i}/op, op)` for every op of every layer, and the derived `("reduce", p, j)` for
    the factorized reduction of h_j after layer p (used where h_j is read later). Skips hold no
    parameters. The trunk is the stem, the layers' BNs and the classifier.
    """

    def __init__(
        self,
        space: EnasMacroSpace,
        filters: int = 36,
        cells: int = 12,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
    ):
        check(
            isinstance(space, EnasMacroSpace),
            f"EnasMacroSupernet needs the enas_macro space, got {getattr(space, 'name', space)!r}",
        )
        super().__init__(space, {})
        skips = [space.decision(f"layer{i}/skip").options if i else () for i in range(space.layers)]
        self.config = self._build_layers(
            space,
            [space.ops] * space.layers,
            skips,
            None,
            True,
            filters,
            cells,
            stages,
            num_classes,
            in_channels,
            dropout,
        )
        for i, layer in enumerate(self.layers):
            for op, module in layer.ops.items():
                self.declare_path((f"layer{i}/op", op), module)
        for p in self.pool_layers:
            for name, module in self.reduce[f"after{p}"].items():
                self.declare_path(("reduce", p, int(name.removeprefix("layer"))), module)

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
        dense: the plain weighted sum over the whole batch (reference) instead of running each op
        only on the ghost batches that use it; both give the same result.
        """
        layout, routed = self.route(x, weights, ghost)
        layout.prepare(rows for w in routed.values() for rows in w.rows.values())
        needed = reductions_used(
            self.space.layers,
            self.pool_layers,
            lambda i, j: f"layer{j}" in routed[f"layer{i}/skip"].rows,  # some ghost batch skips
        )
        return self._run_layers(x, layout.ghost, routed, dense, needed)

    def path_usage(self, weights: Mapping[str, torch.Tensor]) -> dict[PathKey, torch.Tensor]:
        """Ops where their weight is non-zero; reduction (p, j) where h_j is read after layer p."""
        on = {d.name: (weights[d.name].detach() != 0).float() for d in self.space.decisions}
        usage: dict[PathKey, torch.Tensor] = {}
        for i in range(self.space.layers):
            for j, op in enumerate(self.space.ops):
                usage[f"layer{i}/op", op] = on[f"layer{i}/op"][:, j]
        rows = max(w.shape[0] for w in on.values())
        always = on["layer0/op"].new_ones(rows)
        for p in self.pool_layers:
            for j in range(p + 1):
                used = always if j == p else always.new_zeros(1)
                for i in range(p + 1, self.space.layers):
                    used = torch.maximum(used, on[f"layer{i}/skip"][:, j])
                usage["reduce", p, j] = used
        return usage

    def paths_used(self, arch: Architecture) -> set[PathKey]:
        used = super().paths_used(arch)
        return used | {
            ("reduce", p, j)
            for p, j in reductions_used(
                self.space.layers,
                self.pool_layers,
                lambda i, j: f"layer{j}" in arch[f"layer{i}/skip"],
            )
        }


class EnasMacroChild(nn.Module, _MacroLayers):
    """The network of one architecture with ordinary batch norm; only its ops and reductions exist."""

    def __init__(
        self,
        arch: Architecture,
        filters: int = 36,
        cells: int = 12,
        stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        space = arch.space
        check(
            isinstance(space, EnasMacroSpace),
            f"EnasMacroChild needs an architecture of the enas_macro space, got {space.name!r}",
        )
        layers = range(space.layers)
        skips = [arch[f"layer{i}/skip"] if i else () for i in layers]
        pools = pool_layers(cells, stages) if cells == space.layers and stages <= cells else []
        used = reductions_used(space.layers, pools, lambda i, j: f"layer{j}" in skips[i])
        self.config = self._build_layers(
            space,
            [arch[f"layer{i}/op"] for i in layers],
            skips,
            used,
            False,
            filters,
            cells,
            stages,
            num_classes,
            in_channels,
            dropout,
        )
        self.space, self.arch = space, arch

    def forward(self, x: torch.Tensor, ghost: Ghost = None) -> torch.Tensor:
        return self._run_layers(x, ghost)
