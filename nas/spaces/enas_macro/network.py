"""ENAS macro networks: the supernet holding every op of every layer, and stand-alone children.

The search-mode wiring of the ENAS code (`general_child.py`, whole channels): a stem Conv3x3-BN, then
L layers at `filters` channels. Layer i runs its op on layer i-1's output (layer 0: on the stem's) and
adds the outputs it skips to (`EnasMacroSpace.skip_options`: the stem among them in the authors'
wiring), then BN:

    h_i = BN(op_i(h_{i-1}) + Σ_{j in skip_i} h_j)

(the authors' wiring, as their code: layer 0 without the BN, h_0 = op_0(stem)). After each layer p
of `pool_layers(L, stages)` every stored output (h_0..h_p, and the stem in the authors' wiring) is
replaced by a factorized reduction of itself (stride 2, the channels stay `filters`). Head: global
average pool, dropout, linear. The ops and the layer are in `layers.py`; the final-mode network
the authors retrain is `final.py`. A child is the same wiring restricted to its op and skips;
supernet and child name their submodules identically, so a child's state_dict is a subset of the
supernet's and `extract(arch, copy_weights=True)` is a copy.

Shapes: images [N, C, H, W]; weights[decision] is [G, k] with G = number of ghost batches (or 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import check
from nas.ops import FactorizedReduction, make_norm
from nas.routing import Ghost, PathWeights
from nas.spaces.base import Architecture
from nas.spaces.enas_macro.layers import MacroLayer
from nas.spaces.enas_macro.space import STEM, EnasMacroSpace
from nas.spaces.interface import ChildBase, PathKey, SupernetBase, network_config


def pool_layers(layers: int, stages: int) -> list[int]:
    """The layers after which every stored output is reduced: [s * L // stages - 1 for s = 1..stages-1]."""
    return [s * layers // stages - 1 for s in range(1, stages)]


def stored_outputs(space: EnasMacroSpace, p: int) -> list[str]:
    """The outputs stored after layer p, those a later layer may skip to (and its input, h_p)."""
    return ([STEM] if space.wiring == "authors" else []) + [f"layer{j}" for j in range(p + 1)]


def reductions_used(
    space: EnasMacroSpace, pools: Sequence[int], skips_to: Callable[[int, str], bool]
) -> set[tuple[int, str]]:
    """The reductions (p, name) a network needs: output `name` is read after layer p (h_p: the
    next layer's input) or some later layer i > p skips to it (`skips_to(i, name)`)."""
    return {
        (p, name)
        for p in pools
        for name in stored_outputs(space, p)
        if name == f"layer{p}" or any(skips_to(i, name) for i in range(p + 1, space.layers))
    }


def reduction_path(p: int, name: str) -> PathKey:
    """The path key of the reduction of output `name` after layer p: ("reduce", p, j) for layer j,
    ("reduce", p, "stem") for the stem."""
    return ("reduce", p, name if name == STEM else int(name.removeprefix("layer")))


class _MacroLayers:
    """Stem, layers, reductions, pool, dropout, linear: built and run alike by supernet and child."""

    def _build_layers(
        self,
        space: EnasMacroSpace,
        layer_ops: Sequence[Sequence[str]],
        layer_skips: Sequence[Sequence[str]],
        reductions: set[tuple[int, str]] | None,
        ghost: bool,
        filters: int,
        cells: int,
        stages: int,
        num_classes: int,
        in_channels: int,
        dropout: float,
    ) -> dict:
        """Build the modules; `reductions` None: every (p, name). Returns the network config."""
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
        self.store_stem = space.wiring == "authors"
        self.layers = nn.ModuleList(
            # the authors' code: layer 0 has no BN of its own (no skips to add)
            MacroLayer(filters, ops, skips, ghost, norm=i > 0 or not self.store_stem)
            for i, (ops, skips) in enumerate(zip(layer_ops, layer_skips, strict=True))
        )
        self.reduce = nn.ModuleDict()
        for p in self.pool_layers:
            self.reduce[f"after{p}"] = nn.ModuleDict(
                {
                    name: FactorizedReduction(filters, ghost=ghost)
                    for name in stored_outputs(space, p)
                    if reductions is None or (p, name) in reductions
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
        reductions: set[tuple[int, str]] | None = None,
    ) -> torch.Tensor:
        """Logits; `reductions`: the (p, name) to compute (None: every one built)."""
        h = self.stem_bn(self.stem(x), ghost)
        stored: dict[str, torch.Tensor] = {STEM: h} if self.store_stem else {}
        for i, layer in enumerate(self.layers):
            op_w = routed[f"layer{i}/op"] if routed is not None else None
            skip_w = routed[f"layer{i}/skip"] if routed is not None and i else None
            h = layer(h, stored, ghost, op_w, skip_w, dense)
            stored[f"layer{i}"] = h
            if i in self.pool_layers:
                built = self.reduce[f"after{i}"]
                for name in list(stored):
                    if name in built and (reductions is None or (i, name) in reductions):
                        stored[name] = built[name](stored[name], ghost)
                    else:  # never read again
                        stored.pop(name, None)
                h = stored[f"layer{i}"]
        h = F.dropout(h.mean(dim=(2, 3)), self.dropout, self.training)  # global average pool
        return self.classifier(h)


class EnasMacroSupernet(SupernetBase, _MacroLayers):
    """Every op of every layer and every skip; `forward(x, weights, ghost)` computes the weighted sum.

    Paths: `(layer{i}/op, op)` for every op of every layer, and the derived `reduction_path(p, name)`
    for the factorized reduction of an output after layer p (used where it is read later). Skips hold no
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
        skips = [space.skip_options(i) if i else () for i in range(space.layers)]
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
                self.declare_path(reduction_path(p, name), module)

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
            self.space,
            self.pool_layers,
            lambda i, name: name in routed[f"layer{i}/skip"].rows,  # some ghost batch skips
        )
        return self._run_layers(x, layout.ghost, routed, dense, needed)

    def path_usage(self, weights: Mapping[str, torch.Tensor]) -> dict[PathKey, torch.Tensor]:
        """Ops where their weight is non-zero; a reduction after layer p where its output is read."""
        on = {d.name: (weights[d.name].detach() != 0).float() for d in self.space.decisions}
        usage: dict[PathKey, torch.Tensor] = {}
        for i in range(self.space.layers):
            for j, op in enumerate(self.space.ops):
                usage[f"layer{i}/op", op] = on[f"layer{i}/op"][:, j]
        rows = max(w.shape[0] for w in on.values())
        always = on["layer0/op"].new_ones(rows)
        for p in self.pool_layers:
            for name in stored_outputs(self.space, p):
                used = always if name == f"layer{p}" else always.new_zeros(1)
                for i in range(p + 1, self.space.layers):
                    options = self.space.skip_options(i)
                    if name in options:  # the authors' wiring: layer i never skips to h_{i-1}
                        used = torch.maximum(used, on[f"layer{i}/skip"][:, options.index(name)])
                usage[reduction_path(p, name)] = used
        return usage

    def paths_used(self, arch: Architecture) -> set[PathKey]:
        used = super().paths_used(arch)
        return used | {
            reduction_path(p, name)
            for p, name in reductions_used(
                self.space, self.pool_layers, lambda i, name: name in arch[f"layer{i}/skip"]
            )
        }


class EnasMacroChild(ChildBase, _MacroLayers):
    """The network of one architecture with ordinary batch norm; only its ops and reductions exist."""

    space_class = EnasMacroSpace

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
        super().__init__(arch)
        space = self.space
        layers = range(space.layers)
        skips = [arch[f"layer{i}/skip"] if i else () for i in layers]
        pools = pool_layers(cells, stages) if cells == space.layers and stages <= cells else []
        used = reductions_used(space, pools, lambda i, name: name in skips[i])
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
