"""The interface every space's supernet follows, and the base classes of supernets and children.

A supernet holds every path of its space. It is called as `forward(x, weights, ghost)`: for every
decision, `weights[decision]` is a float tensor [G, k] with one row per ghost batch (or one row for
all). 0/1 rows are masks; real-valued rows are multiplied into the paths' outputs and carry gradients
to whatever produced them. A network that weighs the cells holding a decision's paths one by one
(`cells_per_decision`) also takes [cells, G, k] for it: one set of rows per cell. A path whose
weight is exactly 0 in a ghost batch is not computed there (so that weight gets no gradient
through it); the result equals the dense weighted sum.

Every parameter belongs to exactly one *path* or to the always-on trunk (path key `()`), declared by
the network while it is built (`declare_path`), never guessed from module names. Masked L2, parameter
and MAC counts per path (`nas.results.complexity.SizeTable`) and, later, priors on switches use it.

A child (`space.build_child(arch, **supernet.config)`) is the stand-alone network of one
architecture; `ChildBase` holds what every space's child shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from nas.errors import check
from nas.routing import GhostLayout, PathWeights
from nas.spaces.base import Architecture, SearchSpace

PathKey = (
    tuple  # (decision, option) for a decision's paths, other tuples for derived paths; () trunk
)
TRUNK: PathKey = ()


NETWORK_KEYS = ("filters", "cells", "stages", "num_classes", "in_channels")


def network_of(hparams: Mapping) -> dict:
    """The network settings (`NETWORK_KEYS`) of a training module's hyperparameters."""
    return {k: hparams[k] for k in NETWORK_KEYS}


def network_config(
    filters: int, cells: int, stages: int, num_classes: int, in_channels: int
) -> dict:
    """The network settings every space's supernet and child take, checked; `Supernet.config`."""
    config = {
        "filters": filters,
        "cells": cells,
        "stages": stages,
        "num_classes": num_classes,
        "in_channels": in_channels,
    }
    lowest = {"filters": 1, "cells": 1, "stages": 1, "num_classes": 2, "in_channels": 1}
    for key, value in config.items():
        check(
            isinstance(value, int) and value >= lowest[key],
            f"model.{key}={value!r} must be an integer >= {lowest[key]}",
        )
    return config


@runtime_checkable
class Supernet(Protocol):
    """What search, training modules and analyses may rely on, whatever the space."""

    space: SearchSpace
    config: dict  # network settings (filters, cells, ...): `space.build_child(arch, **config)`

    def forward(
        self,
        x: torch.Tensor,
        weights: Mapping[str, torch.Tensor] | None = None,
        ghost=None,
        dense: bool = False,
    ) -> torch.Tensor:
        """Logits [N, classes]; all-on weights when None; `ghost` examples per ghost batch."""

    def extract(self, arch: Architecture, copy_weights: bool = False) -> nn.Module:
        """The stand-alone network of `arch`; with `copy_weights` it computes the supernet's path."""

    def parameter_paths(self) -> dict[str, PathKey]:
        """The path of every parameter (by name); `()` for the always-on trunk."""

    def path_usage(self, weights: Mapping[str, torch.Tensor]) -> dict[PathKey, torch.Tensor]:
        """For every declared path, a float [rows] that is 1 where a ghost batch uses it, else 0."""

    def paths_used(self, arch: Architecture) -> set[PathKey]:
        """The paths (trunk included) present in the stand-alone network of `arch`."""


class SupernetBase(nn.Module):
    """The shared part of every supernet: declared paths, routing of path weights, masked L2, extract.

    Subclasses build their modules, wrap each switchable one in `declare_path(key, module)`, and
    define `_run_layers(x, ghost, routed, dense)` (the network given every decision's routed
    `PathWeights`), or `forward` itself when routing needs more. Keys `(decision, option)` are used by a ghost batch where that option's weight
    is non-zero; a subclass with derived paths (a path used only when another is) overrides
    `path_usage` and `paths_used`.
    """

    def __init__(self, space: SearchSpace, config: Mapping):
        super().__init__()
        self.space, self.config = space, dict(config)
        self._declared: list[tuple[PathKey, nn.Module]] = []
        self._paths: dict[str, PathKey] | None = None
        self._decayed: list[tuple[nn.Parameter, PathKey]] | None = None

    # -- paths --------------------------------------------------------------------------------
    def declare_path(self, key: PathKey, module: nn.Module) -> nn.Module:
        """Record that the parameters of `module` belong to path `key`; returns `module`."""
        check(key != TRUNK, "declare_path: the trunk () is implicit; declare switchable paths only")
        self._declared.append((tuple(key), module))
        self._paths = self._decayed = None
        return module

    def parameter_paths(self) -> dict[str, PathKey]:
        if self._paths is None:
            owner: dict[int, PathKey] = {}
            for key, module in self._declared:
                for p in module.parameters():
                    check(
                        owner.setdefault(id(p), key) == key,
                        f"a parameter is declared on two paths, {owner[id(p)]} and {key}",
                    )
            self._paths = {n: owner.get(id(p), TRUNK) for n, p in self.named_parameters()}
        return self._paths

    def path_keys(self) -> list[PathKey]:
        """Every declared path, in declaration order (no trunk)."""
        return list(dict.fromkeys(key for key, _ in self._declared))

    def path_modules(self) -> list[tuple[PathKey, nn.Module]]:
        """Every declared (path, module) pair, in declaration order (the latency table times them)."""
        return list(self._declared)

    def cells_per_decision(self) -> dict[str, int]:
        """How many cells holding each decision's paths the network weighs one by one, when given
        weights [cells, G, k] for it (BayesNAS's per-cell switches); 1: it takes one weight for all
        of them ([G, k] only). Networks that route per cell override it."""
        return {d.name: 1 for d in self.space.decisions}

    def path_usage(self, weights: Mapping[str, torch.Tensor]) -> dict[PathKey, torch.Tensor]:
        # per-cell weights: a path (the same key in every cell) is used where any cell uses it
        used = {
            d.name: _any_cell(weights[d.name].detach() != 0).float() for d in self.space.decisions
        }
        index = {d.name: {o: j for j, o in enumerate(d.options)} for d in self.space.decisions}
        return {key: used[key[0]][:, index[key[0]][key[1]]] for key in self.path_keys()}

    def paths_used(self, arch: Architecture) -> set[PathKey]:
        chosen = {(d.name, o) for d in self.space.decisions for o in arch[d.name]}
        return {TRUNK} | (chosen & set(self.path_keys()))

    def l2_penalty(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Σ_p u_p · ||w_p||² over conv/linear weights, u_p the fraction of ghost batches using p.

        Weights of paths that no ghost batch uses are left out of the graph, so they get no gradient
        at all (`None`) and the optimizer leaves them, and their momentum, untouched this step.
        """
        if self._decayed is None:  # parameters keep their identity under .to(): build once
            paths = self.parameter_paths()
            self._decayed = [(p, paths[n]) for n, p in self.named_parameters() if p.dim() > 1]
        usage = self.path_usage(weights)
        keys = list(usage)
        means = torch.stack([usage[k].double().mean() for k in keys])
        if means.device.type == "cpu":  # sampled masks: reading them costs nothing
            fraction = dict(zip(keys, means.tolist(), strict=True))
            fraction[TRUNK] = 1.0
            kept = [(p, fraction[key]) for p, key in self._decayed if fraction[key] > 0]
            params = [p for p, _ in kept]
            fractions = torch.tensor([f for _, f in kept], dtype=torch.float64)
        else:  # real-valued weights on the device: every path is in use, no host sync
            index = {k: i for i, k in enumerate(keys)}
            means = torch.cat([means, means.new_ones(1)])
            params = [p for p, _ in self._decayed]
            fractions = means[[index.get(key, len(keys)) for _, key in self._decayed]]
        if not params:
            return torch.zeros(())
        norms = torch.stack(torch._foreach_norm(params))  # one fused kernel, not one per tensor
        return (fractions.to(norms.device, norms.dtype, non_blocking=True) * norms.square()).sum()

    # -- forward plumbing ---------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        weights: Mapping[str, torch.Tensor] | None = None,
        ghost=None,
        dense: bool = False,
    ) -> torch.Tensor:
        """Logits [N, classes].

        weights: decision -> [G, k], one row per ghost batch (or 1 row for all); default all-on.
        ghost: examples per ghost batch (or explicit sizes); None means one ghost batch.
        dense: the plain weighted sum over the whole batch (reference) instead of running each op
        only on the ghost batches that use it; both give the same result.
        """
        layout, routed = self.route(x, weights, ghost)
        every = [w for r in routed.values() for w in (r if isinstance(r, tuple) else (r,))]
        layout.prepare(rows for w in every for rows in w.rows.values())
        return self._run_layers(x, layout.ghost, routed, dense)

    def route(
        self, x: torch.Tensor, weights: Mapping[str, torch.Tensor] | None, ghost
    ) -> tuple[GhostLayout, dict[str, PathWeights | tuple[PathWeights, ...]]]:
        """The ghost layout of `x` and every decision's `PathWeights` (all-on when None); a tuple
        of them, one per cell, for weights given per cell ([cells, G, k])."""
        layout = GhostLayout(x.shape[0], ghost, x.device)
        if weights is None:
            weights = self.space.full_masks(1)
        given = self._cells_given(weights)
        weights = {n: w[0] if given.get(n) == 1 else w for n, w in weights.items()}
        cells = {n: count for n, count in given.items() if count > 1}  # routed one by one
        self.space.check_weights(
            {n: w[0] if n in cells else w for n, w in weights.items()}, layout.count
        )
        flat = {
            (d.name, c): (d.options, weights[d.name][c] if d.name in cells else weights[d.name])
            for d in self.space.decisions
            for c in range(cells.get(d.name, 1))
        }
        routed = PathWeights.for_decisions(flat, layout)  # one host copy for every cell's weights
        return layout, {
            d.name: tuple(routed[d.name, c] for c in range(cells[d.name]))
            if d.name in cells
            else routed[d.name, 0]
            for d in self.space.decisions
        }

    def _cells_given(self, weights: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """{decision: cells} of the weights given per cell ([cells, G, k]), checked."""
        given = {
            n: w.shape[0]
            for n, w in weights.items()
            if isinstance(w, torch.Tensor) and w.dim() == 3
        }
        if given:
            cells = self.cells_per_decision()
            for name, count in given.items():
                check(
                    count == cells.get(name),
                    f"path weights {name!r} have shape {tuple(weights[name].shape)}, rows for "
                    f"{count} cells, but {type(self).__name__} weighs {cells.get(name, 0)} cell(s) "
                    "of it apart; pass [rows, k] (one weight for all its cells)",
                )
        return given

    # -- children -----------------------------------------------------------------------------
    def extract(self, arch: Architecture, copy_weights: bool = False) -> nn.Module:
        """A stand-alone child of `arch` (optionally carrying the shared weights over)."""
        child = self.space.build_child(arch, **self.config)
        param = next(self.parameters(), None)
        if param is not None and param.device.type != "meta":  # where and as precise as this one
            child = child.to(device=param.device, dtype=param.dtype)
        if copy_weights:
            own, wanted = self.state_dict(), child.state_dict()
            child.load_state_dict({k: own.get(k, v) for k, v in wanted.items()})
        return child


def _any_cell(used: torch.Tensor) -> torch.Tensor:
    """[G, k] use of a decision's paths: per-cell use [cells, G, k] reduced over the cells."""
    return used.any(0) if used.dim() == 3 else used


class ChildBase(nn.Module):
    """The shared part of every stand-alone child: one architecture of `space_class`, checked.

    A child holds only the chosen paths of `arch`, with ordinary batch norm, built by the same layer
    code as its space's supernet (so its state_dict is a subset of the supernet's). Subclasses set
    `space_class`, call `super().__init__(arch)` first, then build their layers and set `config` (the
    settings `space.build_child(arch, **config)` takes). `forward(x, ghost)` runs the layers without
    path weights, `_run_layers(x, ghost)`; a child that runs otherwise overrides it.
    """

    space_class: type[SearchSpace] = SearchSpace
    config: dict  # network settings, as the space's supernet has them

    def __init__(self, arch: Architecture):
        super().__init__()
        check(
            isinstance(arch.space, self.space_class),
            f"{type(self).__name__} needs an architecture of the {self.space_class.name} space, "
            f"got {arch.space.name!r}",
        )
        self.space, self.arch = arch.space, arch

    def forward(self, x: torch.Tensor, ghost=None) -> torch.Tensor:
        """Logits [N, classes]; `ghost` examples per ghost batch (None: ordinary batch norm)."""
        return self._run_layers(x, ghost)
